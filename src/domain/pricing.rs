//! The price table and cost math: what one call costs in credits.
//!
//! cost = (input × input price + cached input × cached price + output × output price) / 1M
//!        + request fee, in USD; × the app's markup; ÷ the app's `credit_usd`; rounded **up** to
//! the next micro-credit, once, at the end; then at least the model's minimum charge. All of it
//! in `i128` integers, so no step loses a fraction.

use serde::{Deserialize, Serialize};

use super::money::{Micros, SCALE, div_ceil};

/// Prices of one model, in USD (micro-dollars). Token prices are per 1,000,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per 1M input tokens (those not read from the provider's prompt cache).
    #[schema(value_type = String)]
    pub input: Micros,
    /// USD per 1M output tokens (reasoning tokens included).
    #[schema(value_type = String)]
    pub output: Micros,
    /// USD per 1M cached input tokens; the input price when unset.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub cached_input: Option<Micros>,
    /// USD added to every request.
    #[serde(default)]
    #[schema(value_type = String)]
    pub request_fee: Micros,
    /// The least a request is charged, in USD as the user pays it (after markup).
    #[serde(default)]
    #[schema(value_type = String)]
    pub min_charge: Micros,
}

/// Tokens of one call, by kind. `input` excludes `cached_input` (the gateway splits the
/// provider's prompt count), so no token is priced twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
}

/// An app's conversion from USD to credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    /// USD value of one credit (e.g. 0.01).
    pub credit_usd: Micros,
    /// Multiplier on the provider price (e.g. 1.3), as an exact decimal.
    pub markup: Micros,
}

impl Default for Conversion {
    /// One credit is one cent; no markup.
    fn default() -> Self {
        Conversion {
            credit_usd: Micros(10_000),
            markup: Micros::units(1),
        }
    }
}

/// The cost does not fit in an `i64` of micro-credits (absurd token counts or prices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cost of this call is too large to represent")]
pub struct CostOverflow;

impl Conversion {
    /// Credits for `usd_scaled`, an amount of USD × 10¹² (micro-dollars per million tokens
    /// times tokens), with markup, rounded up.
    fn credits(&self, usd_scaled: i128) -> Result<Micros, CostOverflow> {
        let numerator = usd_scaled
            .checked_mul(self.markup.0 as i128)
            .ok_or(CostOverflow)?;
        // usd_scaled / 10¹² USD × markup / 10⁶ ÷ (credit_usd / 10⁶) credits × 10⁶ micro-credits
        let denominator = SCALE as i128 * self.credit_usd.0 as i128;
        i64::try_from(div_ceil(numerator, denominator))
            .map(Micros)
            .map_err(|_| CostOverflow)
    }

    /// A USD amount the user pays (markup already in it) in credits, rounded up.
    pub fn usd_to_credits(&self, usd: Micros) -> Result<Micros, CostOverflow> {
        let scaled = usd.0 as i128 * SCALE as i128 * SCALE as i128;
        let credits = div_ceil(scaled, SCALE as i128 * self.credit_usd.0 as i128);
        i64::try_from(credits).map(Micros).map_err(|_| CostOverflow)
    }
}

impl Price {
    /// What a call with these tokens costs the user, in micro-credits.
    pub fn cost(&self, tokens: Tokens, conversion: &Conversion) -> Result<Micros, CostOverflow> {
        let cached_price = self.cached_input.unwrap_or(self.input);
        let usd_scaled = [
            (tokens.input, self.input),
            (tokens.cached_input, cached_price),
            (tokens.output, self.output),
            (SCALE as u64, self.request_fee),
        ]
        .into_iter()
        .try_fold(0i128, |sum, (count, price)| {
            (count as i128)
                .checked_mul(price.0 as i128)
                .and_then(|p| sum.checked_add(p))
        })
        .ok_or(CostOverflow)?;
        let cost = conversion.credits(usd_scaled)?;
        Ok(cost.max(conversion.usd_to_credits(self.min_charge)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Micros {
        Micros::parse(text).unwrap()
    }

    fn mini() -> Price {
        Price {
            input: m("0.15"),
            output: m("0.60"),
            cached_input: Some(m("0.075")),
            ..Price::default()
        }
    }

    fn app() -> Conversion {
        Conversion {
            credit_usd: m("0.01"),
            markup: m("1.3"),
        }
    }

    #[test]
    fn a_worked_example_costs_exactly_what_the_docs_say() {
        // 1,000 input + 500 output: $0.00015 + $0.0003 = $0.00045; × 1.3 = $0.000585;
        // ÷ $0.01 per credit = 0.0585 credits.
        let t = Tokens {
            input: 1_000,
            output: 500,
            ..Tokens::default()
        };
        assert_eq!(mini().cost(t, &app()).unwrap(), Micros(58_500));
    }

    #[test]
    fn cached_tokens_use_their_own_price_and_fall_back_to_the_input_price() {
        let t = Tokens {
            cached_input: 1_000_000,
            ..Tokens::default()
        };
        // $0.075 × 1.3 / $0.01 = 9.75 credits
        assert_eq!(mini().cost(t, &app()).unwrap(), m("9.75"));
        let no_cache_price = Price {
            cached_input: None,
            ..mini()
        };
        assert_eq!(no_cache_price.cost(t, &app()).unwrap(), m("19.5"));
    }

    #[test]
    fn a_fraction_of_a_micro_credit_rounds_up_once() {
        // 1 token at $0.15/M = $0.00000015; × 1.3 = $0.000000195 = 0.0000195 credits
        // = 19.5 micro-credits → 20.
        let t = Tokens {
            input: 1,
            ..Tokens::default()
        };
        assert_eq!(mini().cost(t, &app()).unwrap(), Micros(20));
    }

    #[test]
    fn the_minimum_charge_applies_to_small_calls_only() {
        let p = Price {
            min_charge: m("0.001"),
            ..mini()
        };
        // $0.001 ÷ $0.01 = 0.1 credits, markup not applied again.
        let small = Tokens {
            input: 10,
            ..Tokens::default()
        };
        assert_eq!(p.cost(small, &app()).unwrap(), m("0.1"));
        let large = Tokens {
            output: 1_000_000,
            ..Tokens::default()
        };
        assert_eq!(p.cost(large, &app()).unwrap(), m("78"));
        assert_eq!(p.cost(Tokens::default(), &app()).unwrap(), m("0.1"));
    }

    #[test]
    fn the_request_fee_is_marked_up_like_tokens() {
        let p = Price {
            request_fee: m("0.01"),
            ..Price::default()
        };
        assert_eq!(p.cost(Tokens::default(), &app()).unwrap(), m("1.3"));
    }

    #[test]
    fn very_large_and_very_small_values_are_exact_or_refused() {
        let big = Price {
            input: m("1000000"),
            output: m("1000000"),
            ..Price::default()
        };
        let t = Tokens {
            input: 1_000_000_000,
            ..Tokens::default()
        };
        // 1e9 tokens × $1M per 1M = $1e9; × 1.3 / 0.01 = 1.3e11 credits.
        assert_eq!(big.cost(t, &app()).unwrap(), Micros::units(130_000_000_000));
        let absurd = Tokens {
            output: u64::MAX,
            ..Tokens::default()
        };
        assert_eq!(big.cost(absurd, &app()), Err(CostOverflow));
        let tiny = Price {
            input: Micros(1),
            ..Price::default()
        };
        let one = Tokens {
            input: 1,
            ..Tokens::default()
        };
        // $1e-12 is still charged one micro-credit, never zero.
        assert_eq!(tiny.cost(one, &app()).unwrap(), Micros(1));
    }

    #[test]
    fn cost_never_decreases_when_any_token_count_grows() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let p = Price {
                input: Micros(rng.i64(0..100_000_000)),
                output: Micros(rng.i64(0..100_000_000)),
                cached_input: rng.bool().then(|| Micros(rng.i64(0..100_000_000))),
                request_fee: Micros(rng.i64(0..10_000)),
                min_charge: Micros(rng.i64(0..10_000)),
            };
            let c = Conversion {
                credit_usd: Micros(rng.i64(1..10_000_000)),
                markup: Micros(rng.i64(1..5_000_000)),
            };
            let t = Tokens {
                input: rng.u64(0..10_000_000),
                cached_input: rng.u64(0..10_000_000),
                output: rng.u64(0..10_000_000),
            };
            let before = p.cost(t, &c).unwrap();
            let extra = rng.u64(1..1_000);
            for grown in [
                Tokens {
                    input: t.input + extra,
                    ..t
                },
                Tokens {
                    cached_input: t.cached_input + extra,
                    ..t
                },
                Tokens {
                    output: t.output + extra,
                    ..t
                },
            ] {
                let after = p.cost(grown, &c).unwrap();
                assert!(after >= before, "{p:?} {c:?} {t:?} → {grown:?}");
            }
            assert!(before.0 >= 0);
        }
    }
}
