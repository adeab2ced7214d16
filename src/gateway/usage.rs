//! Tokens of a call, as the provider reported them or as estimated when it did not.

use crate::domain::pricing::Tokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens not read from the provider's cache.
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    /// Counted by [`estimate_tokens`], not reported by the provider.
    pub estimated: bool,
}

impl Usage {
    pub fn tokens(&self) -> Tokens {
        Tokens {
            input: self.input,
            cached_input: self.cached_input,
            output: self.output,
        }
    }

    /// An estimate from characters of prompt and of generated text.
    pub fn estimate(prompt_chars: usize, output_chars: usize) -> Usage {
        Usage {
            input: estimate_tokens(prompt_chars),
            cached_input: 0,
            output: estimate_tokens(output_chars),
            estimated: true,
        }
    }
}

/// About four characters per token for English text with the common BPE tokenizers; any text
/// counts at least one token, so output that was produced is never estimated at zero.
pub fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_round_up_and_never_make_produced_text_free() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(8), 2);
        assert_eq!(estimate_tokens(9), 3);
        let u = Usage::estimate(40, 3);
        assert_eq!((u.input, u.output, u.estimated), (10, 1, true));
    }
}
