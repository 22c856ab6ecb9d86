//! Prometheus text exposition (format 0.0.4): metric families with HELP and TYPE, samples of one
//! family kept together even when several deployments contribute to it.

/// One metric family and its samples (each a full line without the newline).
#[derive(Debug, Clone)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    /// `counter`, `gauge` or `summary`.
    pub kind: &'static str,
    pub samples: Vec<String>,
}

impl Family {
    /// A family with one sample labelled by `model`.
    pub(crate) fn of_model(
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        model: &str,
        value: impl std::fmt::Display,
    ) -> Family {
        let mut f = Family::new(name, kind, help);
        f.samples
            .push(format!("{name}{{model=\"{model}\"}} {value}"));
        f
    }

    pub(crate) fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }
}

/// Merges families of the same name (keeping first-seen order) and renders them.
pub(crate) fn render(families: impl IntoIterator<Item = Family>) -> String {
    let mut merged: Vec<Family> = Vec::new();
    for f in families {
        match merged.iter_mut().find(|m| m.name == f.name) {
            Some(m) => m.samples.extend(f.samples),
            None => merged.push(f),
        }
    }
    let mut out = String::new();
    for f in &merged {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} {}\n",
            f.name, f.help, f.name, f.kind
        ));
        for s in &f.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{render, Family};

    #[test]
    fn families_of_several_sources_are_merged_and_kept_together() {
        let f = |name, v: &str| {
            let mut f = Family::new(name, "counter", "help");
            f.samples.push(format!("{name}{{model=\"{v}\"}} 1"));
            f
        };
        let text = render([f("a_total", "x"), f("b_total", "x"), f("a_total", "y")]);
        assert_eq!(
            text,
            "# HELP a_total help\n# TYPE a_total counter\na_total{model=\"x\"} 1\na_total{model=\"y\"} 1\n\
             # HELP b_total help\n# TYPE b_total counter\nb_total{model=\"x\"} 1\n"
        );
    }
}
