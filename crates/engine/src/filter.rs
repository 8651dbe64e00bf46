//! `table_filter`: parsed, checked against an allowlist, and re-rendered.
//!
//! A filter never reaches PostgreSQL as the caller wrote it. It is parsed
//! with `sqlparser` (PostgreSQL dialect) into an expression tree, every node
//! of which must be one of:
//!
//! - a column of the table (a bare name; quoted names keep their case);
//! - a literal: number, `'string'`, `$$string$$`, `TRUE`/`FALSE`, `NULL`;
//! - comparison (`= <> != < <= > >=`), boolean (`AND OR NOT`), arithmetic
//!   (`+ - * / %`) and `||` operators, parentheses;
//! - `IN (list)`, `BETWEEN`, `LIKE`/`ILIKE` (with `ESCAPE`), `IS [NOT] NULL`,
//!   `IS [NOT] TRUE/FALSE`, `IS [NOT] DISTINCT FROM`;
//! - a cast (`CAST(x AS t)` or `x::t`) to a built-in type of [`CAST_TYPES`];
//! - a call of an immutable function of [`FUNCTIONS`].
//!
//! Anything else (subqueries, other functions such as `set_config`, `;`,
//! comments, `E''` strings, parameters) is refused with a message naming the
//! part refused. The accepted tree is rendered again by this module, every
//! identifier quoted and every literal re-escaped, fully parenthesised.

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DataType, DateTimeField, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, UnaryOperator, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use ace_session::quote_ident;

use crate::error::{EngineError, Result};

/// Functions a filter may call: immutable, without side effects.
pub const FUNCTIONS: &[&str] = &[
    "abs",
    "btrim",
    "ceil",
    "ceiling",
    "char_length",
    "coalesce",
    "floor",
    "greatest",
    "least",
    "left",
    "length",
    "lower",
    "ltrim",
    "md5",
    "mod",
    "nullif",
    "right",
    "round",
    "rtrim",
    "sign",
    "substr",
    "trunc",
    "upper",
];

/// Types a filter may cast to (as PostgreSQL spells them).
pub const CAST_TYPES: &[&str] = &[
    "bigint",
    "boolean",
    "bytea",
    "char",
    "cidr",
    "date",
    "double precision",
    "inet",
    "integer",
    "interval",
    "json",
    "jsonb",
    "numeric",
    "real",
    "smallint",
    "text",
    "time",
    "timestamp",
    "timestamptz",
    "uuid",
    "varchar",
];

/// A checked filter, ready to be put after `WHERE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    sql: String,
}

impl Filter {
    /// Parses and checks `text` against the table's `columns`.
    ///
    /// # Errors
    ///
    /// [`EngineError::Filter`] naming the part refused and why.
    pub fn parse(text: &str, columns: &[String]) -> Result<Self> {
        let refuse = |part: &str, reason: &str| EngineError::Filter {
            part: part.to_owned(),
            reason: reason.to_owned(),
        };
        let dialect = PostgreSqlDialect {};
        let tokens = Tokenizer::new(&dialect, text)
            .tokenize()
            .map_err(|error| refuse(text, &error.to_string()))?;
        for token in &tokens {
            match token {
                Token::Whitespace(Whitespace::SingleLineComment { .. })
                | Token::Whitespace(Whitespace::MultiLineComment(_)) => {
                    return Err(refuse(&token.to_string(), "comments are not allowed"));
                }
                Token::SemiColon => return Err(refuse(";", "only one expression is allowed")),
                Token::Placeholder(p) => {
                    return Err(refuse(p, "parameters are not allowed"));
                }
                _ => {}
            }
        }
        let mut parser = Parser::new(&dialect)
            .try_with_sql(text)
            .map_err(|error| refuse(text, &error.to_string()))?;
        let expr = parser
            .parse_expr()
            .map_err(|error| refuse(text, &error.to_string()))?;
        let rest = parser.peek_token();
        if rest.token != Token::EOF {
            return Err(refuse(
                &rest.token.to_string(),
                "unexpected text after the expression",
            ));
        }
        let sql = Renderer { columns }.expr(&expr)?;
        Ok(Filter { sql })
    }

    /// The SQL to put after `WHERE` (already parenthesised).
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

struct Renderer<'a> {
    columns: &'a [String],
}

fn refused(part: impl std::fmt::Display, reason: &str) -> EngineError {
    EngineError::Filter {
        part: part.to_string(),
        reason: reason.to_owned(),
    }
}

impl Renderer<'_> {
    fn expr(&self, expr: &Expr) -> Result<String> {
        Ok(match expr {
            Expr::Identifier(ident) => self.column(ident)?,
            Expr::Value(value) => literal(&value.value)?,
            Expr::Nested(inner) => format!("({})", self.expr(inner)?),
            Expr::BinaryOp { left, op, right } => {
                let op = binary_op(op)?;
                format!("({} {op} {})", self.expr(left)?, self.expr(right)?)
            }
            Expr::UnaryOp { op, expr: inner } => {
                let op = match op {
                    UnaryOperator::Not => "NOT ",
                    UnaryOperator::Minus => "-",
                    UnaryOperator::Plus => "+",
                    other => return Err(refused(other, "operator not allowed")),
                };
                format!("({op}{})", self.expr(inner)?)
            }
            Expr::IsNull(e) => format!("({} IS NULL)", self.expr(e)?),
            Expr::IsNotNull(e) => format!("({} IS NOT NULL)", self.expr(e)?),
            Expr::IsTrue(e) => format!("({} IS TRUE)", self.expr(e)?),
            Expr::IsNotTrue(e) => format!("({} IS NOT TRUE)", self.expr(e)?),
            Expr::IsFalse(e) => format!("({} IS FALSE)", self.expr(e)?),
            Expr::IsNotFalse(e) => format!("({} IS NOT FALSE)", self.expr(e)?),
            Expr::IsDistinctFrom(a, b) => {
                format!("({} IS DISTINCT FROM {})", self.expr(a)?, self.expr(b)?)
            }
            Expr::IsNotDistinctFrom(a, b) => {
                format!("({} IS NOT DISTINCT FROM {})", self.expr(a)?, self.expr(b)?)
            }
            Expr::InList {
                expr: e,
                list,
                negated,
            } => {
                let items = list
                    .iter()
                    .map(|item| self.expr(item))
                    .collect::<Result<Vec<_>>>()?;
                let not = if *negated { "NOT " } else { "" };
                format!("({} {not}IN ({}))", self.expr(e)?, items.join(", "))
            }
            Expr::Between {
                expr: e,
                negated,
                low,
                high,
            } => {
                let not = if *negated { "NOT " } else { "" };
                format!(
                    "({} {not}BETWEEN {} AND {})",
                    self.expr(e)?,
                    self.expr(low)?,
                    self.expr(high)?
                )
            }
            Expr::Like {
                negated,
                any,
                expr: e,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated,
                any,
                expr: e,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(refused(expr, "LIKE ANY is not allowed"));
                }
                let word = if matches!(expr, Expr::Like { .. }) {
                    "LIKE"
                } else {
                    "ILIKE"
                };
                let not = if *negated { "NOT " } else { "" };
                let escape = match escape_char {
                    Some(c) => format!(" ESCAPE {}", quote_literal(c)),
                    None => String::new(),
                };
                format!(
                    "({} {not}{word} {}{escape})",
                    self.expr(e)?,
                    self.expr(pattern)?
                )
            }
            Expr::Cast {
                kind,
                expr: e,
                data_type,
                format,
            } => {
                if format.is_some() || !matches!(kind, CastKind::Cast | CastKind::DoubleColon) {
                    return Err(refused(
                        expr,
                        "only CAST(x AS type) and x::type are allowed",
                    ));
                }
                format!("CAST({} AS {})", self.expr(e)?, cast_type(data_type)?)
            }
            Expr::Ceil { expr: e, field } | Expr::Floor { expr: e, field } => {
                if !matches!(
                    field,
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
                ) {
                    return Err(refused(expr, "only ceil(x) and floor(x) are allowed"));
                }
                let name = if matches!(expr, Expr::Ceil { .. }) {
                    "ceil"
                } else {
                    "floor"
                };
                format!("{name}({})", self.expr(e)?)
            }
            Expr::Function(function) => {
                let name = match function.name.0.as_slice() {
                    [part] => part
                        .as_ident()
                        .filter(|ident| ident.quote_style.is_none())
                        .map(|ident| ident.value.to_lowercase()),
                    _ => None,
                };
                let Some(name) = name.filter(|name| FUNCTIONS.contains(&name.as_str())) else {
                    return Err(refused(
                        &function.name,
                        "function not allowed in a table filter",
                    ));
                };
                let plain = function.filter.is_none()
                    && function.over.is_none()
                    && function.null_treatment.is_none()
                    && function.within_group.is_empty()
                    && matches!(function.parameters, FunctionArguments::None);
                let FunctionArguments::List(list) = &function.args else {
                    return Err(refused(function, "function arguments must be a plain list"));
                };
                if !plain || list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return Err(refused(function, "function arguments must be a plain list"));
                }
                let args = list
                    .args
                    .iter()
                    .map(|arg| match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => self.expr(e),
                        other => Err(refused(other, "only plain function arguments are allowed")),
                    })
                    .collect::<Result<Vec<_>>>()?;
                format!("{name}({})", args.join(", "))
            }
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                return Err(refused(expr, "subqueries are not allowed"));
            }
            other => return Err(refused(other, "not allowed in a table filter")),
        })
    }

    fn column(&self, ident: &Ident) -> Result<String> {
        // PostgreSQL folds unquoted names to lower case.
        let name = match ident.quote_style {
            Some('"') => ident.value.clone(),
            None => ident.value.to_lowercase(),
            Some(_) => return Err(refused(ident, "only double quotes quote a column name")),
        };
        if !self.columns.contains(&name) {
            return Err(refused(ident, "no such column in the table"));
        }
        Ok(quote_ident(&name))
    }
}

fn binary_op(op: &BinaryOperator) -> Result<&'static str> {
    Ok(match op {
        BinaryOperator::Plus => "+",
        BinaryOperator::Minus => "-",
        BinaryOperator::Multiply => "*",
        BinaryOperator::Divide => "/",
        BinaryOperator::Modulo => "%",
        BinaryOperator::StringConcat => "||",
        BinaryOperator::Gt => ">",
        BinaryOperator::Lt => "<",
        BinaryOperator::GtEq => ">=",
        BinaryOperator::LtEq => "<=",
        BinaryOperator::Eq => "=",
        BinaryOperator::NotEq => "<>",
        BinaryOperator::And => "AND",
        BinaryOperator::Or => "OR",
        other => return Err(refused(other, "operator not allowed")),
    })
}

fn literal(value: &Value) -> Result<String> {
    Ok(match value {
        Value::Number(text, _) => {
            let numeric = !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
                && text.starts_with(|c: char| c.is_ascii_digit() || c == '.');
            if !numeric {
                return Err(refused(text, "not a number"));
            }
            text.clone()
        }
        Value::SingleQuotedString(text) => quote_literal(text),
        Value::DollarQuotedString(dollar) => quote_literal(&dollar.value),
        Value::Boolean(true) => "TRUE".into(),
        Value::Boolean(false) => "FALSE".into(),
        Value::Null => "NULL".into(),
        other => return Err(refused(other, "this kind of literal is not allowed")),
    })
}

/// A string literal for `standard_conforming_strings = on` (pinned by the
/// session layer): only single quotes need doubling.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn cast_type(data_type: &DataType) -> Result<String> {
    let name = match data_type {
        DataType::SmallInt(_) | DataType::Int2(_) => "smallint",
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "integer",
        DataType::BigInt(_) | DataType::Int8(_) => "bigint",
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => "numeric",
        DataType::Real | DataType::Float4 => "real",
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 => "double precision",
        DataType::Text => "text",
        DataType::Varchar(_) | DataType::CharacterVarying(_) => "varchar",
        DataType::Char(_) | DataType::Character(_) => "char",
        DataType::Boolean | DataType::Bool => "boolean",
        DataType::Date => "date",
        DataType::Time(_, _) => "time",
        DataType::Timestamp(_, tz) => match tz {
            sqlparser::ast::TimezoneInfo::WithTimeZone | sqlparser::ast::TimezoneInfo::Tz => {
                "timestamptz"
            }
            _ => "timestamp",
        },
        DataType::Interval => "interval",
        DataType::Uuid => "uuid",
        DataType::JSON => "json",
        DataType::JSONB => "jsonb",
        DataType::Bytea => "bytea",
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            let name = name.to_string().to_lowercase();
            let canonical = match name.as_str() {
                "int2" => "smallint",
                "int4" | "int" => "integer",
                "int8" => "bigint",
                "float4" => "real",
                "float8" => "double precision",
                "bool" => "boolean",
                other => other,
            };
            return CAST_TYPES
                .iter()
                .find(|allowed| **allowed == canonical)
                .map(|allowed| (*allowed).to_owned())
                .ok_or_else(|| refused(data_type, "cast to this type is not allowed"));
        }
        other => return Err(refused(other, "cast to this type is not allowed")),
    };
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<String> {
        ["id", "name", "Balance", "created"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    fn ok(text: &str) -> String {
        Filter::parse(text, &columns())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .sql()
            .to_owned()
    }

    fn refused_part(text: &str) -> String {
        match Filter::parse(text, &columns()) {
            Ok(filter) => panic!("{text} was accepted as {}", filter.sql()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn renders_allowed_expressions() {
        assert_eq!(
            ok("id > 10 AND id <= 20"),
            r#"(("id" > 10) AND ("id" <= 20))"#
        );
        assert_eq!(
            ok(r#"lower(name) LIKE 'o''brien%' OR "Balance" BETWEEN 1.5 AND 2e3"#),
            r#"((lower("name") LIKE 'o''brien%') OR ("Balance" BETWEEN 1.5 AND 2e3))"#
        );
        assert_eq!(ok("id IN (1, 2, 3)"), r#"("id" IN (1, 2, 3))"#);
        assert_eq!(ok("name IS NULL"), r#"("name" IS NULL)"#);
        assert_eq!(
            ok("created::date >= '2024-01-01'"),
            r#"(CAST("created" AS date) >= '2024-01-01')"#
        );
        assert_eq!(ok("NOT (id % 2 = 0)"), r#"(NOT ((("id" % 2) = 0)))"#);
        assert_eq!(ok("ID = 1"), r#"("id" = 1)"#);
    }

    #[test]
    fn refuses_everything_else() {
        for (text, part) in [
            ("id IN (SELECT 1)", "SELECT"),
            ("id = (SELECT max(id) FROM t)", "SELECT"),
            ("pg_sleep(10) IS NULL", "pg_sleep"),
            ("set_config('role', 'postgres', false) = 'x'", "set_config"),
            ("id = 1; DROP TABLE t", ";"),
            ("id = 1 -- comment", "comment"),
            ("id = 1 /* c */", "c"),
            ("missing = 1", "missing"),
            ("t.id = 1", "t.id"),
            ("\"balance\" = 1", "balance"),
            ("id::regclass = 1", "regclass"),
            ("id = $1", "$1"),
            ("id = 1 1", "1"),
            ("E'\\x' = name", "E"),
        ] {
            let error = refused_part(text);
            assert!(
                error.to_lowercase().contains(&part.to_lowercase()),
                "{text}: {error}"
            );
        }
    }
}
