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
