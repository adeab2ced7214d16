//! The wire format of a call — OpenAI chat completions, Anthropic messages, Gemini
//! generateContent — and, per format, where the usage and the generated text are, in a whole
//! answer and in a stream.

use serde_json::{Map, Value};

use super::cap::OutputCap;
use super::route::{Provider, Route};
use super::usage::Usage;
use super::{anthropic, chat_to_anthropic, chat_to_gemini, gemini, openai};
use crate::error::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `/v1/chat/completions`: OpenAI and anything speaking its API, and the mock.
    OpenAiChat,
    /// `/anthropic/v1/messages`, passed through.
    Anthropic,
    /// `/gemini/v1beta/models/{model}:generateContent`, passed through.
    Gemini,
    /// `/v1/embeddings`: OpenAI and the mock.
    OpenAiEmbeddings,
}

impl Format {
    /// Whether a provider can serve a call made in this format: natively, or (chat
    /// completions on Anthropic) through translation. A pass-through call goes only to its own.
    pub fn served_by(self, p: Provider) -> bool {
        matches!(
            (self, p),
            (
                Format::OpenAiChat,
                Provider::OpenAi | Provider::Mock | Provider::Anthropic | Provider::Gemini
            ) | (Format::OpenAiEmbeddings, Provider::OpenAi | Provider::Mock)
                | (Format::Anthropic, Provider::Anthropic)
                | (Format::Gemini, Provider::Gemini)
        )
    }

    /// The format a provider answers in.
    pub fn of(p: Provider) -> Format {
        match p {
            Provider::OpenAi | Provider::Mock => Format::OpenAiChat,
            Provider::Anthropic => Format::Anthropic,
            Provider::Gemini => Format::Gemini,
        }
    }

    /// The body to send to `route` for a call made in this format: the client's with the
    /// model mapped, or its translation, carrying the call's output cap in the provider's own
    /// field when the client set none; the fields that cannot be translated otherwise.
    pub fn upstream_body(
        self,
        route: &Route,
        body: &Map<String, Value>,
        stream: bool,
        cap: OutputCap,
    ) -> Result<Vec<u8>, Vec<FieldError>> {
        let json = |m: &Map<String, Value>| serde_json::to_vec(m).expect("a JSON map serializes");
        // Ours to add only when the client set none (theirs is already in the body).
        let ours = (!cap.from_client).then_some(cap.tokens);
        Ok(match (self, route.provider) {
            (_, Provider::Mock) => Vec::new(),
            (Format::OpenAiChat, Provider::Anthropic) => {
                // Anthropic requires max_tokens: the translation always sets the cap.
                let mut translated = chat_to_anthropic::request(body, &route.upstream, cap.tokens)?;
                translated.remove("stream");
                if stream {
                    translated.insert("stream".into(), Value::Bool(true));
                }
                json(&translated)
            }
            (Format::OpenAiChat, Provider::Gemini) => {
                let mut translated = chat_to_gemini::request(body)?;
                if let Some(tokens) = ours {
                    gemini::set_max_output_tokens(&mut translated, tokens);
                }
                json(&translated)
            }
            (Format::OpenAiChat, _) => openai::upstream_body(body, &route.upstream, stream, ours),
            (Format::Anthropic, _) => anthropic::upstream_body(body, &route.upstream),
            (Format::Gemini, _) => match ours {
                Some(tokens) => {
                    let mut body = body.clone();
                    gemini::set_max_output_tokens(&mut body, tokens);
                    json(&body)
                }
                None => json(body),
            },
            (Format::OpenAiEmbeddings, _) => {
                openai::upstream_body(body, &route.upstream, false, None)
            }
        })
    }

    /// Usage in a whole (non-streamed) answer.
    pub fn usage_of(self, v: &Value) -> Option<Usage> {
        match self {
            Format::OpenAiChat | Format::OpenAiEmbeddings => openai::usage_of(v),
            Format::Anthropic => v.get("usage").and_then(anthropic::usage_in),
            Format::Gemini => gemini::usage_of(v),
        }
    }

    /// Characters of generated text in a whole answer.
    pub fn response_chars(self, v: &Value) -> usize {
        match self {
            Format::OpenAiChat => openai::response_chars(v),
            Format::OpenAiEmbeddings => 0,
            Format::Anthropic => anthropic::response_chars(v),
            Format::Gemini => gemini::response_chars(v),
        }
    }
}

/// Rewrites a provider's stream into the client's format, event by event.
#[derive(Debug)]
pub enum Translator {
    Anthropic(chat_to_anthropic::StreamTranslator),
    Gemini(chat_to_gemini::StreamTranslator),
}

impl Translator {
    /// The translator for a call made in `client` format answered in `source`, if they differ.
    pub fn between(
        client: Format,
        source: Format,
        model: &str,
        include_usage: bool,
    ) -> Option<Self> {
        match (client, source) {
            (Format::OpenAiChat, Format::Anthropic) => Some(Translator::Anthropic(
                chat_to_anthropic::StreamTranslator::new(model, include_usage),
            )),
            (Format::OpenAiChat, Format::Gemini) => Some(Translator::Gemini(
                chat_to_gemini::StreamTranslator::new(model, include_usage),
            )),
            _ => None,
        }
    }

    pub fn event(&mut self, data: &str) -> Vec<String> {
        match self {
            Translator::Anthropic(t) => t.event(data),
            Translator::Gemini(t) => t.event(data),
        }
    }

    /// What ends the client's stream when the provider's has ended (Gemini sends no marker).
    pub fn finish(&mut self) -> Vec<String> {
        match self {
            Translator::Anthropic(_) => Vec::new(),
            Translator::Gemini(t) => t.finish(),
        }
    }
}

/// A whole answer in `source` format, rewritten for a `client` call (`None`: no rewriting).
pub fn translate_response(
    client: Format,
    source: Format,
    answer: &Value,
    model: &str,
) -> Option<Value> {
    match (client, source) {
        (Format::OpenAiChat, Format::Anthropic) => Some(chat_to_anthropic::response(answer, model)),
        (Format::OpenAiChat, Format::Gemini) => Some(chat_to_gemini::response(answer, model)),
        _ => None,
    }
}

/// What a stream has told so far.
#[derive(Debug, Clone)]
pub struct Tally {
    format: Format,
    /// Characters of generated text.
    pub chars: usize,
    usage: Option<Usage>,
    anthropic: anthropic::StreamState,
    /// The provider's own end marker was seen (OpenAI `finish_reason`, Gemini
    /// `finishReason`, Anthropic `message_stop`).
    finished: bool,
}

/// What one event carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    pub chars: usize,
    /// OpenAI's extra usage chunk (`choices: []`), which a client that did not ask for it
    /// must not see.
    pub usage_only: bool,
}

impl Tally {
    pub fn new(format: Format) -> Tally {
        Tally {
            format,
            chars: 0,
            usage: None,
            anthropic: anthropic::StreamState::default(),
            finished: false,
        }
    }

    /// Reads one event's `data`.
    pub fn observe(&mut self, data: &str) -> Observed {
        let seen = match self.format {
            Format::OpenAiChat | Format::OpenAiEmbeddings => match openai::parse_chunk(data) {
                Some(c) => {
                    if c.usage.is_some() {
                        self.usage = c.usage;
                    }
                    self.finished |= c.finished;
                    Observed {
                        chars: c.chars,
                        usage_only: c.usage_only,
                    }
                }
                None => Observed::default(),
            },
            Format::Anthropic => Observed {
                chars: self.anthropic.observe(data),
                usage_only: false,
            },
            Format::Gemini => match serde_json::from_str::<Value>(data) {
                Ok(v) => {
                    if let Some(u) = gemini::usage_of(&v) {
                        self.usage = Some(u);
                    }
                    self.finished |= v
                        .get("candidates")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| cs.iter().any(|c| c.get("finishReason").is_some()));
                    Observed {
                        chars: gemini::response_chars(&v),
                        usage_only: false,
                    }
                }
                Err(_) => Observed::default(),
            },
        };
        self.chars += seen.chars;
        seen
    }

    /// Whether the stream reached the provider's end marker: a stream that closes before it
    /// was cut, whatever the connection says.
    pub fn finished(&self) -> bool {
        self.finished || self.anthropic.stopped
    }

    /// The provider's usage if it reported it; else what it reported in part with the rest
    /// estimated; else an estimate (flagged) from the prompt and the generated text.
    pub fn usage(&self, prompt_chars: usize) -> Usage {
        let reported = match self.format {
            Format::Anthropic => self
                .anthropic
                .usage()
                .or_else(|| self.anthropic.partial(self.chars)),
            _ => self.usage,
        };
        reported.unwrap_or_else(|| Usage::estimate(prompt_chars, self.chars))
    }
}
