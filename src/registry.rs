//! Dotted-name routing for requests and notifications from the server.
//!
//! Pure bookkeeping, generic over what is stored, so the routing rules are
//! tested without actors: an exact name wins, then the longest registered
//! namespace, then the catch-all.

use std::collections::HashMap;
use std::fmt;

/// Where a handler or listener is registered.
///
/// Converting from a string follows one rule, so routes read naturally:
///
/// | string | route | matches |
/// |---|---|---|
/// | `"app.users.get"` | [`Route::Exact`] | only `app.users.get` |
/// | `"app.users."` (trailing dot) | [`Route::Namespace`] | `app.users.get`, `app.users.admin.list`, … |
/// | `"*"` | [`Route::Any`] | every method |
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::Route;
///
/// assert_eq!(Route::from("app.users."), Route::namespace("app.users"));
/// assert!(Route::from("app.").matches("app.users.get"));
/// assert!(!Route::from("app.").matches("application.start"));
/// assert!(Route::from("*").matches("anything"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// One method name.
    Exact(String),
    /// Every method under a dotted prefix (stored without the trailing dot).
    Namespace(String),
    /// Every method.
    Any,
}

impl Route {
    /// A route for exactly `method`.
    pub fn exact(method: impl Into<String>) -> Route {
        Route::Exact(method.into())
    }

    /// A route for every method under `prefix` (with or without its trailing dot).
    pub fn namespace(prefix: impl Into<String>) -> Route {
        let mut prefix = prefix.into();
        while prefix.ends_with('.') {
            prefix.pop();
        }
        Route::Namespace(prefix)
    }

    /// Whether `method` falls under this route.
    pub fn matches(&self, method: &str) -> bool {
        match self {
            Route::Exact(name) => name == method,
            Route::Namespace(prefix) => method
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
            Route::Any => true,
        }
    }
}

impl From<&str> for Route {
    fn from(s: &str) -> Route {
        if s == "*" {
            Route::Any
        } else if s.ends_with('.') {
            Route::namespace(s)
        } else {
            Route::exact(s)
        }
    }
}

impl From<String> for Route {
    fn from(s: String) -> Route {
        Route::from(s.as_str())
    }
}

impl From<&String> for Route {
    fn from(s: &String) -> Route {
        Route::from(s.as_str())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Exact(name) => f.write_str(name),
            Route::Namespace(prefix) => write!(f, "{prefix}."),
            Route::Any => f.write_str("*"),
        }
    }
}

/// Values registered at routes.
pub(crate) struct Registry<H> {
    exact: HashMap<String, H>,
    namespaces: HashMap<String, H>,
    any: Option<H>,
}

impl<H> Default for Registry<H> {
    fn default() -> Self {
        Registry {
            exact: HashMap::new(),
            namespaces: HashMap::new(),
            any: None,
        }
    }
}

impl<H> Registry<H> {
    /// The value at exactly this route, created with `make` if absent.
    pub fn entry(&mut self, route: Route, make: impl FnOnce() -> H) -> &mut H {
        match route {
            Route::Exact(name) => self.exact.entry(name).or_insert_with(make),
            Route::Namespace(prefix) => self.namespaces.entry(prefix).or_insert_with(make),
            Route::Any => self.any.get_or_insert_with(make),
        }
    }

    /// Puts `value` at `route`, returning what was there.
    pub fn insert(&mut self, route: Route, value: H) -> Option<H> {
        match route {
            Route::Exact(name) => self.exact.insert(name, value),
            Route::Namespace(prefix) => self.namespaces.insert(prefix, value),
            Route::Any => self.any.replace(value),
        }
    }

    /// Removes what is at exactly `route`.
    pub fn remove(&mut self, route: &Route) -> Option<H> {
        match route {
            Route::Exact(name) => self.exact.remove(name),
            Route::Namespace(prefix) => self.namespaces.remove(prefix),
            Route::Any => self.any.take(),
        }
    }

    /// The most specific route matching `method` and its value: the exact
    /// name, else the longest namespace, else the catch-all.
    pub fn resolve(&self, method: &str) -> Option<(Route, &H)> {
        if let Some(h) = self.exact.get(method) {
            return Some((Route::exact(method), h));
        }
        if !self.namespaces.is_empty() {
            // "a.b.c" tries the namespaces "a.b", then "a".
            let mut end = method.len();
            while let Some(dot) = method[..end].rfind('.') {
                if let Some(h) = self.namespaces.get(&method[..dot]) {
                    return Some((Route::namespace(&method[..dot]), h));
                }
                end = dot;
            }
        }
        self.any.as_ref().map(|h| (Route::Any, h))
    }

    /// Every route matching `method`, most specific first.
    pub fn matching<'a>(&'a mut self, method: &str) -> Vec<(Route, &'a mut H)> {
        let mut out = Vec::new();
        if let Some(h) = self.exact.get_mut(method) {
            out.push((Route::exact(method), h));
        }
        let mut namespaced: Vec<(Route, &mut H)> = self
            .namespaces
            .iter_mut()
            .filter(|(prefix, _)| Route::Namespace((*prefix).clone()).matches(method))
            .map(|(prefix, h)| (Route::Namespace(prefix.clone()), h))
            .collect();
        namespaced.sort_by_key(|(route, _)| std::cmp::Reverse(route.to_string().len()));
        out.extend(namespaced);
        if let Some(h) = self.any.as_mut() {
            out.push((Route::Any, h));
        }
        out
    }

    /// Keeps only the values for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut H) -> bool) {
        self.exact.retain(|_, h| keep(h));
        self.namespaces.retain(|_, h| keep(h));
        if self.any.as_mut().is_some_and(|h| !keep(h)) {
            self.any = None;
        }
    }

    /// How many routes have a value.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.exact.len() + self.namespaces.len() + usize::from(self.any.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(routes: &[&str]) -> Registry<String> {
        let mut r = Registry::default();
        for route in routes {
            r.insert(Route::from(*route), route.to_string());
        }
        r
    }

    #[test]
    fn strings_become_routes() {
        assert_eq!(Route::from("a.b"), Route::Exact("a.b".into()));
        assert_eq!(Route::from("a.b."), Route::Namespace("a.b".into()));
        assert_eq!(Route::from("a.b.."), Route::Namespace("a.b".into()));
        assert_eq!(Route::from("*"), Route::Any);
        assert_eq!(Route::namespace("x").to_string(), "x.");
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let r = registry(&["app.", "app.users.", "app.users.get", "*"]);
        let table = [
            ("app.users.get", "app.users.get"),
            ("app.users.list", "app.users."),
            ("app.users.admin.list", "app.users."),
            ("app.start", "app."),
            ("application.start", "*"),
            ("app", "*"),
            ("other", "*"),
            ("app.users", "app."),
        ];
        for (method, expected) in table {
            let (_, found) = r.resolve(method).unwrap();
            assert_eq!(found, expected, "{method}");
        }
        assert!(registry(&["app."]).resolve("apps.x").is_none());
        assert!(registry(&[]).resolve("x").is_none());
    }

    #[test]
    fn every_matching_route_is_listed_most_specific_first() {
        let mut r = registry(&["a.", "a.b.", "a.b.c", "*", "x."]);
        let routes: Vec<String> = r
            .matching("a.b.c")
            .into_iter()
            .map(|(route, _)| route.to_string())
            .collect();
        assert_eq!(routes, ["a.b.c", "a.b.", "a.", "*"]);
    }

    #[test]
    fn removal_and_retain() {
        let mut r = registry(&["a.", "b", "*"]);
        assert_eq!(r.remove(&Route::from("a.")), Some("a.".into()));
        assert_eq!(r.resolve("a.x").map(|(route, _)| route), Some(Route::Any));
        r.retain(|h| h != "*");
        assert_eq!(r.len(), 1);
        assert!(r.resolve("a.x").is_none());
        r.entry(Route::from("b"), String::new).push('!');
        assert_eq!(r.resolve("b").unwrap().1, "b!");
    }

    #[test]
    fn removing_the_catch_all_leaves_unknown_methods_unrouted() {
        let mut r = registry(&["b", "*"]);
        assert_eq!(r.remove(&Route::Any), Some("*".into()));
        assert!(r.resolve("anything").is_none());
        assert_eq!(
            r.resolve("b").map(|(route, _)| route),
            Some(Route::exact("b"))
        );
        assert_eq!(r.remove(&Route::Any), None);
    }

    #[test]
    fn a_route_matches_what_it_names() {
        let name = String::from("a.b");
        let exact = Route::from(&name);
        assert!(exact.matches("a.b"));
        assert!(!exact.matches("a.bc") && !exact.matches("a.b.c"));
        assert!(Route::Any.matches(""));
        assert!(Route::from(&String::from("a.")).matches("a.b"));
    }
}
