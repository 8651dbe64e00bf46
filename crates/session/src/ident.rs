//! Quoting identifiers.

/// Quotes `name` as a PostgreSQL identifier: wrapped in double quotes, with
/// every double quote doubled. Whatever `name` contains, the result is one
/// identifier and nothing else.
///
/// ```
/// use ace_session::quote_ident;
/// assert_eq!(quote_ident("api_user"), r#""api_user""#);
/// assert_eq!(quote_ident(r#"a"; DROP ROLE x; --"#), r#""a""; DROP ROLE x; --""#);
/// ```
pub fn quote_ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `schema.table`, both quoted.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// `name` as `psql` would show it: bare when it reads back as itself
/// unquoted (lower-case letters, digits, `_`, not starting with a digit),
/// quoted otherwise. For messages only; SQL text uses [`quote_ident`].
///
/// ```
/// use ace_session::display_ident;
/// assert_eq!(display_ident("orders"), "orders");
/// assert_eq!(display_ident("Order Items"), r#""Order Items""#);
/// ```
pub fn display_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_owned()
    } else {
        quote_ident(name)
    }
}

/// `schema.table` for messages, each part as [`display_ident`] shows it.
pub fn display_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", display_ident(schema), display_ident(name))
}
