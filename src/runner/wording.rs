//! serde's words in an experiment file's error, told in the file's terms: "invalid type:
//! string \"3\", expected i64" becomes "expected a whole number, found the text "3" (in
//! quotes): write `repetitions = 3`".

/// The message for a serde error about `key` (dotted; may be empty).
pub(crate) fn user_words(message: &str, key: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ") else {
        return message.to_string();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return message.to_string();
    };
    let name = key.rsplit('.').next().unwrap_or(key);
    let name = name.split('[').next().unwrap_or(name);
    let found_value = found
        .split_once(' ')
        .map(|(_, v)| v.trim_matches(['`', '"']));
    let (want, example) = match expected {
        "i64" | "u64" | "u32" | "i32" | "usize" | "an integer" => (
            "a whole number",
            match found_value.filter(|v| v.parse::<i64>().is_ok()) {
                Some(v) => format!("write `{name} = {v}`, without quotes"),
                None => format!("e.g. `{name} = 3`"),
            },
        ),
        "a string" => (
            "text in quotes",
            match found_value {
                Some(v) if found.starts_with("integer") || found.starts_with("floating") => {
                    format!("write `{name} = \"{v}\"`; a duration takes its unit, e.g. \"{v}s\"")
                }
                _ => format!("e.g. `{name} = \"5s\"`"),
            },
        ),
        "a boolean" => (
            "true or false",
            format!("e.g. `{name} = true`, without quotes"),
        ),
        "a sequence" => ("a list in brackets", format!("e.g. `{name} = [1, 2]`")),
        other => return format!("expected {other}, found {}", found_words(found)),
    };
    format!("expected {want}, found {}: {example}", found_words(found))
}

/// `string "3"` → `the text "3"`, `integer `3`` → `the number 3`, `map` → `a table`.
fn found_words(found: &str) -> String {
    let (kind, value) = found.split_once(' ').unwrap_or((found, ""));
    let value = value.trim_matches('`');
    match kind {
        "string" => format!("the text {value}"),
        "integer" | "floating" => format!("the number {value}"),
        "boolean" => value.to_string(),
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        _ => found.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_types_read_as_the_files_words() {
        assert_eq!(
            user_words("invalid type: string \"3\", expected i64", "repetitions"),
            "expected a whole number, found the text \"3\": write `repetitions = 3`, without quotes"
        );
        assert_eq!(
            user_words("invalid type: integer `5`, expected a string", "duration"),
            "expected text in quotes, found the number 5: write `duration = \"5\"`; a duration takes its unit, e.g. \"5s\""
        );
        assert_eq!(
            user_words(
                "invalid type: string \"yes\", expected a boolean",
                "server.tls"
            ),
            "expected true or false, found the text \"yes\": e.g. `tls = true`, without quotes"
        );
        assert_eq!(user_words("unknown field `x`", "x"), "unknown field `x`");
    }
}
