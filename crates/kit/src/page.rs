//! Page sizes and pages of lists: one rule for every service and transport (GraphQL `first`,
//! gRPC `first`), so a list answers the same on each.

use crate::AppError;

/// The largest `first` a list takes.
pub const MAX_FIRST: usize = 100;

/// `first` as a count: `default` when absent, `BAD_USER_INPUT` (field `first`) outside
/// `0..=MAX_FIRST`.
pub fn page_size(first: Option<i32>, default: usize) -> Result<usize, AppError> {
    match first {
        None => Ok(default),
        Some(n) if n >= 0 && n as usize <= MAX_FIRST => Ok(n as usize),
        Some(_) => {
            Err(AppError::bad_input(format!("first must be between 0 and {MAX_FIRST}"))
                .with_field("first", "out of range"))
        }
    }
}

/// One page of a list: its items and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

impl<T> Page<T> {
    /// The page of `limit` items from `rows` fetched with `limit + 1`: the extra row only
    /// says that more follow.
    pub fn from_rows(mut rows: Vec<T>, limit: usize) -> Self {
        let has_next = rows.len() > limit;
        rows.truncate(limit);
        Page { items: rows, has_next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_bounded() {
        assert_eq!(page_size(None, 10).unwrap(), 10);
        assert_eq!(page_size(Some(0), 10).unwrap(), 0);
        assert_eq!(page_size(Some(100), 10).unwrap(), 100);
        for bad in [101, -1, i32::MIN, i32::MAX] {
            let e = page_size(Some(bad), 10).unwrap_err();
            assert_eq!(e.message(), "first must be between 0 and 100");
        }
    }

    #[test]
    fn a_page_says_whether_more_follow() {
        assert_eq!(Page::from_rows(vec![1, 2, 3], 2), Page { items: vec![1, 2], has_next: true });
        assert_eq!(Page::from_rows(vec![1, 2], 2), Page { items: vec![1, 2], has_next: false });
        assert_eq!(Page::from_rows(Vec::<i32>::new(), 0), Page { items: vec![], has_next: false });
    }
}
