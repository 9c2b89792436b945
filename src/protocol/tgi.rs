//! The routes of a text-generation-inference (and text-embeddings-
//! inference) server, as HF endpoints serve them under their URL: what the
//! HF backends call, and what the TGI-compatible door answers.

/// One route of TGI's (or TEI's) router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TgiRoute {
    /// `POST /`: generate (TGI's compat route), or embed (TEI).
    Root,
    Generate,
    GenerateStream,
    Chat,
    Completions,
    Embed,
    Info,
    Health,
}

impl TgiRoute {
    pub const ALL: [TgiRoute; 8] = [
        TgiRoute::Root,
        TgiRoute::Generate,
        TgiRoute::GenerateStream,
        TgiRoute::Chat,
        TgiRoute::Completions,
        TgiRoute::Embed,
        TgiRoute::Info,
        TgiRoute::Health,
    ];

    /// The path under the endpoint's URL.
    pub fn path(self) -> &'static str {
        match self {
            TgiRoute::Root => "/",
            TgiRoute::Generate => "/generate",
            TgiRoute::GenerateStream => "/generate_stream",
            TgiRoute::Chat => "/v1/chat/completions",
            TgiRoute::Completions => "/v1/completions",
            TgiRoute::Embed => "/embed",
            TgiRoute::Info => "/info",
            TgiRoute::Health => "/health",
        }
    }

    /// The route of a path.
    pub fn of_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.path() == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_indexed_in_their_order() {
        for (i, route) in TgiRoute::ALL.into_iter().enumerate() {
            assert_eq!(route as usize, i);
            assert_eq!(TgiRoute::of_path(route.path()), Some(route));
        }
    }
}
