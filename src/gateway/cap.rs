//! A call's output cap: how many tokens the provider may write, held up front and — when the
//! client set none — sent upstream in the provider's own field, so an answer can never cost
//! more than its hold (the provider stops at the cap with `finish_reason: length`, or
//! `max_tokens` / `MAX_TOKENS`, instead of leaving a charge the hold cannot cover).

use super::openai::ChatRequest;
use super::route::Route;

/// The output tokens a call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    pub tokens: u64,
    /// The client set it (`max_tokens`, `max_completion_tokens`, `maxOutputTokens`): the body
    /// already carries it and it is never lowered.
    pub from_client: bool,
}

impl OutputCap {
    /// The client's cap, else the smallest maximum configured for the call's routes (a
    /// fallback must accept it too).
    pub fn of(request: &ChatRequest, routes: &[Route]) -> OutputCap {
        match request.max_output_tokens {
            Some(tokens) => OutputCap {
                tokens,
                from_client: true,
            },
            None => OutputCap {
                tokens: routes
                    .iter()
                    .map(|r| r.max_output_tokens)
                    .min()
                    .unwrap_or(1)
                    .max(1),
                from_client: false,
            },
        }
    }

    /// The largest cap, at most this one, whose hold (`hold_of(tokens)`) fits in `budget`
    /// micro-credits: how a user whose credits do not cover the model's whole maximum still
    /// gets an answer, cut at what they can pay. `None` when the client set the cap, or when
    /// not even one output token fits.
    pub fn lowered_to(
        self,
        budget: i64,
        hold_of: impl Fn(u64) -> Option<i64>,
    ) -> Option<OutputCap> {
        if self.from_client {
            return None;
        }
        let fits = |tokens: u64| hold_of(tokens).is_some_and(|h| h <= budget);
        if !fits(1) {
            return None;
        }
        // The hold grows with the cap: the largest fitting cap by bisection.
        let (mut lo, mut hi) = (1, self.tokens);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) { lo = mid } else { hi = mid - 1 }
        }
        Some(OutputCap {
            tokens: lo,
            from_client: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(tokens: u64) -> OutputCap {
        OutputCap {
            tokens,
            from_client: false,
        }
    }

    #[test]
    fn a_cap_is_lowered_to_the_largest_one_the_budget_pays() {
        // 10 for the prompt, 3 per output token.
        let hold = |t: u64| Some(10 + 3 * t as i64);
        assert_eq!(ours(4096).lowered_to(100, hold), Some(ours(30)));
        assert_eq!(ours(4096).lowered_to(13, hold), Some(ours(1)));
        assert_eq!(ours(4096).lowered_to(12, hold), None);
        assert_eq!(ours(20).lowered_to(1_000, hold), Some(ours(20)));
    }

    #[test]
    fn a_clients_cap_is_never_lowered() {
        let cap = OutputCap {
            tokens: 100,
            from_client: true,
        };
        assert_eq!(cap.lowered_to(1_000_000, |t| Some(t as i64)), None);
    }
}
