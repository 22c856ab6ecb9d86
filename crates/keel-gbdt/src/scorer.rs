//! The compiled scorer: a validated IR ([`Model`]) with the runtime tables derived from it once
//! at load (the lockstep node array, the bit-vector tables). Everything that scores works on a
//! [`Scorer`]; the IR stays a plain, persisted description.

use std::sync::Arc;

use crate::model::{Model, Node, FEATURE_MASK, GENERAL, LEAF, NAN_FIRST, SPECIAL};
use crate::qs::Qs;

/// A validated model and its runtime tables. Derefs to the IR for the model's facts.
#[derive(Debug, Clone)]
pub(crate) struct Scorer {
    ir: Model,
    /// Runtime form of `ir.nodes` for the lockstep walk.
    pub(crate) fast: Vec<Node>,
    /// Bit-vector scoring tables (`None` when the model does not fit them).
    pub(crate) qs: Option<Arc<Qs>>,
}

impl std::ops::Deref for Scorer {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.ir
    }
}

impl PartialEq for Scorer {
    /// Equal when the IRs are (the tables derive from it).
    fn eq(&self, o: &Scorer) -> bool {
        self.ir == o.ir
    }
}

impl Scorer {
    /// Compiles a validated IR (call only after [`Model::validate`] succeeded).
    ///
    /// In `fast`, a leaf becomes a self-loop: threshold NaN (every comparison false), no flags
    /// but `LEAF`, feature 0, second child itself; so a lane that reached its leaf stays there
    /// while the other lanes of a lockstep group keep walking.
    pub(crate) fn compile(ir: Model) -> Scorer {
        let nf = ir.num_features as u32;
        let fast: Vec<Node> = ir
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let flags = n.flags();
                if flags & LEAF != 0 {
                    return Node {
                        value: f64::NAN,
                        word: u32::from(LEAF) << 24,
                        second: i as u32,
                    };
                }
                let nan_first = flags & NAN_FIRST != 0;
                // The prepared row reads NaN as +inf (first half) or -inf (second half); that
                // agrees with the NaN rule unless the threshold itself is NaN or infinite the
                // wrong way. Those (never seen in trained models) take the general path.
                let plain = flags & SPECIAL == 0
                    && !n.value.is_nan()
                    && (n.value != f64::INFINITY || nan_first);
                if plain {
                    let f = n.word & FEATURE_MASK;
                    Node {
                        value: n.value,
                        word: if nan_first { f + nf } else { f },
                        second: n.second,
                    }
                } else {
                    Node {
                        value: n.value,
                        word: n.word | (u32::from(GENERAL) << 24),
                        second: n.second,
                    }
                }
            })
            .collect();
        let qs = Qs::build(&ir, &fast).map(Arc::new);
        Scorer { ir, fast, qs }
    }

    /// The IR.
    pub(crate) fn ir(&self) -> &Model {
        &self.ir
    }
}
