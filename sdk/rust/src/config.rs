//! The plugin's `config` table, with typed reads whose errors name the key.
//!
//! The host passes the `config` table of the plugin's `[[plugin]]` entry as
//! string pairs. A plugin's `init` reads what it needs with [`Config::parse`],
//! [`Config::require`] or [`Config::list`] and returns their `Err` as is: the
//! message names the key, what was expected and what was found, and the host
//! shows it to the operator when it refuses the load.

use core::fmt::Display;
use core::str::FromStr;

/// The plugin's configuration: key/value strings from its `[[plugin]]` entry.
///
/// ```
/// use htlcgate_sdk::Config;
/// let config = Config::from_pairs([("base_msat", "1000"), ("ppm", "abc")]);
/// assert_eq!(config.require::<u64>("base_msat"), Ok(1000));
/// assert_eq!(
///     config.parse::<u64>("ppm"),
///     Err("config key `ppm`: expected an unsigned integer, got `abc`".to_string())
/// );
/// assert_eq!(config.parse::<u64>("absent"), Ok(None));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The pairs in the order the host sent them.
    entries: Vec<(String, String)>,
}

impl Config {
    /// Builds a config from key/value pairs (the host's list, or a test's).
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Config
    where
        K: Into<String>,
        V: Into<String>,
    {
        Config {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value of `key`, untrimmed. When a key appears twice the first
    /// wins (the host sends a TOML table, so it does not).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// All pairs, in the host's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when there is no key at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Parses the value of `key` (surrounding whitespace trimmed) as a `T`:
    /// `Ok(None)` when the key is absent, `Err` naming the key, the expected
    /// form and the value when it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(key)
            .map(|value| parse_value(key, value.trim()))
            .transpose()
    }

    /// Like [`parse`](Self::parse), with `default` when the key is absent.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// Like [`parse`](Self::parse), but a missing key is an error too.
    pub fn require<T>(&self, key: &str) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.parse(key)?.ok_or_else(|| {
            format!(
                "config key `{key}` is required: set it to {}",
                Expected::of::<T>().what
            )
        })
    }

    /// Parses a comma-separated list (entries trimmed, empty entries skipped):
    /// `Ok(None)` when the key is absent, `Err` naming the key and the first bad
    /// entry.
    ///
    /// ```
    /// use htlcgate_sdk::{Config, Scid};
    /// let config = Config::from_pairs([("deny_in", "800000x1x0, 42"), ("deny_out", "1,2x")]);
    /// assert_eq!(config.list::<Scid>("deny_in"), Ok(Some(vec![Scid(879609302220865536), Scid(42)])));
    /// assert!(config.list::<Scid>("deny_out").unwrap_err().contains("`2x`"));
    /// ```
    pub fn list<T>(&self, key: &str) -> Result<Option<Vec<T>>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| parse_value(key, entry))
            .collect::<Result<Vec<T>, String>>()
            .map(Some)
    }

    /// Decodes the value of `key` as hex bytes (upper or lower case, even
    /// length, whitespace around trimmed).
    pub fn hex(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        decode_hex(value.trim()).map(Some).ok_or_else(|| {
            format!(
                "config key `{key}`: expected hex bytes (an even number of 0-9a-f digits), got `{value}`"
            )
        })
    }

    /// Refuses keys outside `known`, so a misspelt key (`max_msats`) is an error
    /// instead of a silently ignored setting.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((key, _)) if known.is_empty() => Err(format!(
                "config key `{key}` is not known: this plugin takes no config"
            )),
            Some((key, _)) => Err(format!(
                "config key `{key}` is not known; known keys: {}",
                known.join(", ")
            )),
        }
    }
}

/// Parses one value, with the error message every reader uses.
fn parse_value<T>(key: &str, value: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse::<T>().map_err(|err| {
        let expected = Expected::of::<T>();
        let digits = match value.strip_prefix('-') {
            Some(rest) if expected.signed => rest,
            _ => value,
        };
        let looks_numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        match expected.range {
            // Digits that still fail to parse are out of range.
            Some(range) if looks_numeric => {
                format!("config key `{key}`: expected {range}, got `{value}`")
            }
            _ if expected.plain => {
                format!(
                    "config key `{key}`: expected {}, got `{value}`",
                    expected.what
                )
            }
            _ => format!(
                "config key `{key}`: expected {}, got `{value}` ({err})",
                expected.what
            ),
        }
    })
}

/// How to describe the type a config value should parse into.
struct Expected {
    /// A phrase: "an unsigned integer".
    what: &'static str,
    /// For integers, the phrase used when the value is digits but out of range.
    range: Option<&'static str>,
    /// True when `what` says it all, so the parser's own error adds nothing.
    plain: bool,
    /// True for signed integers, whose digits may follow a `-`.
    signed: bool,
}

impl Expected {
    /// Describes `T` for error messages; unknown types get their name and the
    /// parser's error.
    fn of<T>() -> Expected {
        let name = core::any::type_name::<T>();
        let plain = |what, range| Expected {
            what,
            range,
            plain: true,
            signed: false,
        };
        match name {
            "u8" => plain("an unsigned integer", Some("an unsigned integer up to 255")),
            "u16" => plain(
                "an unsigned integer",
                Some("an unsigned integer up to 65535"),
            ),
            "u32" => plain(
                "an unsigned integer",
                Some("an unsigned integer up to 4294967295"),
            ),
            "u64" => plain(
                "an unsigned integer",
                Some("an unsigned integer up to 18446744073709551615"),
            ),
            "u128" | "usize" => plain("an unsigned integer", Some("a smaller unsigned integer")),
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => Expected {
                signed: true,
                ..plain(
                    "an integer",
                    Some(match name {
                        "i8" => "an integer from -128 to 127",
                        "i16" => "an integer from -32768 to 32767",
                        "i32" => "an integer from -2147483648 to 2147483647",
                        "i64" => "an integer from -9223372036854775808 to 9223372036854775807",
                        _ => "a smaller integer",
                    }),
                )
            },
            "f32" | "f64" => plain("a number", None),
            "bool" => plain("`true` or `false`", None),
            "char" => plain("a single character", None),
            "alloc::string::String" => plain("a string", None),
            "htlcgate_sdk::scid::Scid" => Expected {
                what: "a short channel id (BLOCKxTXxOUT or decimal)",
                range: None,
                plain: false,
                signed: false,
            },
            "htlcgate_sdk::node::NodeId" => Expected {
                what: "a node public key (66 hex digits)",
                range: None,
                plain: false,
                signed: false,
            },
            _ => Expected {
                what: "a valid value",
                range: None,
                plain: false,
                signed: false,
            },
        }
    }
}

/// Decodes hex digits into bytes; `None` on an odd length or a non-hex digit.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scid;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn get_returns_the_raw_value() {
        let c = config(&[("a", " 1 "), ("b", "")]);
        assert_eq!(c.get("a"), Some(" 1 "));
        assert_eq!(c.get("b"), Some(""));
        assert_eq!(c.get("c"), None);
        assert!(c.contains("b"));
        assert!(!c.is_empty());
        assert_eq!(c.iter().count(), 2);
    }

    #[test]
    fn parse_trims_and_reads_the_type() {
        let c = config(&[("n", " 42 "), ("flag", "true"), ("scid", "800000x1x0")]);
        assert_eq!(c.parse::<u64>("n"), Ok(Some(42)));
        assert_eq!(c.parse::<bool>("flag"), Ok(Some(true)));
        assert_eq!(
            c.parse::<Scid>("scid"),
            Ok(Some(Scid::from_parts(800_000, 1, 0).unwrap()))
        );
        assert_eq!(c.parse::<u64>("missing"), Ok(None));
        assert_eq!(c.parse_or::<u64>("missing", 7), Ok(7));
        assert_eq!(c.parse_or::<u64>("n", 7), Ok(42));
    }

    #[test]
    fn parse_error_names_key_expectation_and_value() {
        let c = config(&[("base_msat", "abc"), ("empty", ""), ("neg", "-1")]);
        assert_eq!(
            c.parse::<u64>("base_msat"),
            Err("config key `base_msat`: expected an unsigned integer, got `abc`".into())
        );
        assert_eq!(
            c.parse::<u64>("empty"),
            Err("config key `empty`: expected an unsigned integer, got ``".into())
        );
        assert_eq!(
            c.parse::<u64>("neg"),
            Err("config key `neg`: expected an unsigned integer, got `-1`".into())
        );
    }

    #[test]
    fn out_of_range_integer_says_the_limit() {
        let c = config(&[("ppm", "18446744073709551616"), ("small", "256")]);
        assert_eq!(
            c.parse::<u64>("ppm"),
            Err("config key `ppm`: expected an unsigned integer up to 18446744073709551615, got `18446744073709551616`".into())
        );
        assert_eq!(
            c.parse::<u8>("small"),
            Err("config key `small`: expected an unsigned integer up to 255, got `256`".into())
        );
    }

    #[test]
    fn signed_integers_accept_a_minus_sign() {
        let c = config(&[("delta", "-40"), ("huge", "-99999999999"), ("word", "x")]);
        assert_eq!(c.parse::<i32>("delta"), Ok(Some(-40)));
        assert_eq!(
            c.parse::<i32>("huge"),
            Err("config key `huge`: expected an integer from -2147483648 to 2147483647, got `-99999999999`".into())
        );
        assert_eq!(
            c.parse::<i32>("word"),
            Err("config key `word`: expected an integer, got `x`".into())
        );
    }

    #[test]
    fn scid_error_includes_the_reason() {
        let c = config(&[("chan", "1x2")]);
        let err = c.parse::<Scid>("chan").unwrap_err();
        assert!(
            err.starts_with("config key `chan`: expected a short channel id"),
            "{err}"
        );
        assert!(err.contains("got `1x2`"), "{err}");
        assert!(err.contains("three parts"), "{err}");
    }

    #[test]
    fn node_id_error_includes_the_reason() {
        let c = config(&[("peer", "02ab"), ("good", &"03".repeat(33))]);
        assert_eq!(
            c.parse::<crate::NodeId>("peer"),
            Err("config key `peer`: expected a node public key (66 hex digits), got `02ab` (a node public key is 66 hex digits (33 bytes))".into())
        );
        assert_eq!(
            c.parse::<crate::NodeId>("good"),
            Ok(Some(crate::NodeId([3; 33])))
        );
    }

    #[test]
    fn require_names_the_missing_key() {
        let c = config(&[("max_msat", "5")]);
        assert_eq!(c.require::<u64>("max_msat"), Ok(5));
        assert_eq!(
            c.require::<u64>("min_msat"),
            Err("config key `min_msat` is required: set it to an unsigned integer".into())
        );
    }

    #[test]
    fn list_splits_on_commas_and_names_the_bad_entry() {
        let c = config(&[
            ("l", " 1, 2 ,,3 "),
            ("bad", "1, 800000x1, 3"),
            ("blank", " "),
        ]);
        assert_eq!(c.list::<u64>("l"), Ok(Some(vec![1, 2, 3])));
        assert_eq!(c.list::<u64>("missing"), Ok(None));
        assert_eq!(c.list::<u64>("blank"), Ok(Some(vec![])));
        let err = c.list::<Scid>("bad").unwrap_err();
        assert!(err.starts_with("config key `bad`:"), "{err}");
        assert!(err.contains("`800000x1`"), "{err}");
    }

    #[test]
    fn hex_decodes_both_cases() {
        let c = config(&[("h", " 00ffAb "), ("odd", "abc"), ("bad", "zz")]);
        assert_eq!(c.hex("h"), Ok(Some(vec![0x00, 0xff, 0xab])));
        assert_eq!(c.hex("missing"), Ok(None));
        assert!(c.hex("odd").unwrap_err().contains("config key `odd`"));
        assert!(c.hex("bad").unwrap_err().contains("got `zz`"));
        assert_eq!(decode_hex(""), Some(vec![]));
    }

    #[test]
    fn deny_unknown_names_the_stray_key() {
        let c = config(&[("max_msat", "1"), ("max_msats", "2")]);
        assert_eq!(
            c.deny_unknown(&["max_msat"]),
            Err("config key `max_msats` is not known; known keys: max_msat".into())
        );
        assert_eq!(c.deny_unknown(&["max_msat", "max_msats"]), Ok(()));
        assert!(c.deny_unknown(&[]).unwrap_err().contains("takes no config"));
        assert_eq!(Config::default().deny_unknown(&[]), Ok(()));
    }
}
