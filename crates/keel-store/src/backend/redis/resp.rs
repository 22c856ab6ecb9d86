//! Commands encoded once, in RESP (arrays of bulk strings), and sent as one pipeline: the hot
//! paths write their arguments straight into one buffer (a member is written as its times and
//! row side by side, never concatenated first), and a retried request re-sends the same bytes.

/// A pipeline of encoded commands.
#[derive(Debug, Default, Clone)]
pub(super) struct Packed {
    /// The encoded commands.
    pub(super) bytes: Vec<u8>,
    /// How many replies they produce.
    pub(super) count: usize,
}

impl Packed {
    /// An empty pipeline with room for `bytes` of commands.
    pub(super) fn with_capacity(bytes: usize) -> Packed {
        Packed {
            bytes: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Starts a command of `args` arguments (its name included); write them with
    /// [`Packed::arg`] / [`Packed::arg2`].
    pub(super) fn begin(&mut self, args: usize) -> &mut Self {
        self.count += 1;
        self.bytes.push(b'*');
        self.number(args);
        self
    }

    /// One argument.
    pub(super) fn arg(&mut self, a: &[u8]) -> &mut Self {
        self.bytes.push(b'$');
        self.number(a.len());
        self.bytes.extend_from_slice(a);
        self.bytes.extend_from_slice(b"\r\n");
        self
    }

    /// One argument made of two parts.
    pub(super) fn arg2(&mut self, a: &[u8], b: &[u8]) -> &mut Self {
        self.bytes.push(b'$');
        self.number(a.len() + b.len());
        self.bytes.extend_from_slice(a);
        self.bytes.extend_from_slice(b);
        self.bytes.extend_from_slice(b"\r\n");
        self
    }

    /// A whole command.
    pub(super) fn cmd(&mut self, args: &[&[u8]]) -> &mut Self {
        self.begin(args.len());
        for a in args {
            self.arg(a);
        }
        self
    }

    /// The commands of `other` after these.
    pub(super) fn append(&mut self, other: &Packed) {
        self.bytes.extend_from_slice(&other.bytes);
        self.count += other.count;
    }

    fn number(&mut self, n: usize) {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = n;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.bytes.extend_from_slice(&buf[i..]);
        self.bytes.extend_from_slice(b"\r\n");
    }
}
