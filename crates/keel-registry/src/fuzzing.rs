//! Entry point shared by the fuzz target and the corpus replay test. Not part of the stable API.

/// Decodes `data` as every record kind the registry reads from disk, directly and wrapped
/// in a valid envelope header (so the payload decoder is reached past the checksum).
/// Also parses it as the MLflow answers the shared registry reads (runs, aliases, audit tags).
pub fn exercise(data: &[u8]) {
    crate::registry::fuzz_records(data);
    #[cfg(feature = "mlflow")]
    crate::remote::fuzz_answers(data);
}
