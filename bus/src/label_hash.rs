//! `label_hash`: FNV-1a/64 over a canonical string's bytes, with the standard
//! parameters. It detects that a workload's canonical form changed; it is never
//! an identity (two canonicals may collide).

pub const FNV1A64_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
pub const FNV1A64_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn label_hash(canonical: &[u8]) -> u64 {
    canonical.iter().fold(FNV1A64_OFFSET_BASIS, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV1A64_PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from the FNV reference test suite (FNV-1a, 64-bit).
    #[test]
    fn reference_vectors() {
        assert_eq!(label_hash(b""), 0xcbf29ce484222325);
        assert_eq!(label_hash(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(label_hash(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn not_the_prototypes_truncated_basis() {
        // The prototype used 1469598103934665603 (a digit short) as basis.
        assert_ne!(label_hash(b""), 1_469_598_103_934_665_603);
    }
}
