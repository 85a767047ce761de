//! Folding and tokenising text in any script, alike at index and at query time.
//!
//! A character is folded to lowercase ASCII where it has a Latin reading: compatibility
//! decomposition (full-width `Ａ` is `a`), marks dropped (`é` is `e`), then a transliteration
//! for what does not decompose (`ø` `o`, `æ` `ae`, `œ` `oe`, `ß` `ss`, `ł` `l`, Cyrillic and
//! Greek letters). Han, kana and hangul are kept as they are, one unit per character. Anything
//! that is neither a letter nor a digit (punctuation, symbols, emoji) separates words.
//!
//! Text becomes **chunks** (runs between white space) of **pieces** (runs between
//! punctuation): `AC/DC` is one chunk of two pieces, `spider man` two chunks of one. Indexing
//! emits every piece, the joined pieces of a chunk (`acdc`, `rem` for R.E.M., `aha` for
//! a-ha) and each pair of neighbouring chunks joined (`spiderman` for "Spider Man"), so that a
//! query typed with or without the punctuation or the space finds it. A run of CJK characters
//! is indexed as its characters and its character pairs, so a phrase from the middle of a
//! title matches.

use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A piece of a word, as written.
    Word,
    /// Pieces or words written apart, joined (`acdc`, `spiderman`).
    Joined,
    /// One CJK character.
    Char,
    /// Two neighbouring CJK characters.
    Pair,
}

/// A folded token and the bytes of the original text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The folded text: lowercase ASCII letters and digits, or CJK characters.
    pub text: String,
    /// Byte offset of its first character in the original text.
    pub start: usize,
    /// Byte offset just past its last character.
    pub end: usize,
    /// What it is.
    pub kind: TokenKind,
}

/// Whether `c` is written without spaces between words (Han, kana, hangul), so that it is
/// indexed by characters and character pairs.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FA1F) // CJK extensions B–F, compatibility supplement
}

/// How one character of the original text reads.
enum Unit {
    /// Folded letters and digits (possibly several: `ß` is `ss`), part of a piece.
    Letters(String),
    /// A CJK character.
    Cjk(char),
    /// Punctuation or a symbol: ends a piece, not a chunk.
    Punctuation,
    /// White space: ends a chunk.
    Space,
}

fn unit_of(c: char) -> Unit {
    if c.is_whitespace() {
        return Unit::Space;
    }
    if is_cjk(c) {
        return Unit::Cjk(c);
    }
    if !c.is_alphanumeric() {
        return Unit::Punctuation;
    }
    let mut folded = String::new();
    for d in c.nfkd().filter(|d| !is_combining_mark(*d)) {
        if d.is_ascii_alphanumeric() {
            folded.push(d.to_ascii_lowercase());
        } else if is_cjk(d) {
            // A compatibility form of a CJK character (a half-width katakana).
            return Unit::Cjk(d);
        } else if d.is_alphanumeric() {
            // No decomposition to ASCII: transliterate (ø, æ, ß, ł, Cyrillic, Greek, …).
            folded.extend(
                deunicode::deunicode_char(d)
                    .unwrap_or("")
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase()),
            );
        }
    }
    if folded.is_empty() {
        Unit::Punctuation
    } else {
        Unit::Letters(folded)
    }
}

/// A piece: folded text with its byte span.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    start: usize,
    end: usize,
}

/// What a text breaks into before indexing or querying.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Chunks of pieces (words between white space, split at punctuation).
    chunks: Vec<Vec<Piece>>,
    /// CJK runs, each its characters with their byte spans.
    cjk: Vec<Vec<(char, usize, usize)>>,
}

/// Breaks `text` into chunks of folded pieces and CJK runs.
fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut chunk: Vec<Piece> = Vec::new();
    let mut piece: Option<Piece> = None;
    let mut run: Vec<(char, usize, usize)> = Vec::new();
    let end_piece = |piece: &mut Option<Piece>, chunk: &mut Vec<Piece>| {
        if let Some(piece) = piece.take() {
            chunk.push(piece);
        }
    };
    let end_chunk = |chunk: &mut Vec<Piece>, parsed: &mut Parsed| {
        if !chunk.is_empty() {
            parsed.chunks.push(std::mem::take(chunk));
        }
    };
    for (at, c) in text.char_indices() {
        let next = at + c.len_utf8();
        match unit_of(c) {
            Unit::Letters(letters) => {
                if !run.is_empty() {
                    parsed.cjk.push(std::mem::take(&mut run));
                }
                match &mut piece {
                    Some(piece) => {
                        piece.text.push_str(&letters);
                        piece.end = next;
                    }
                    None => {
                        piece = Some(Piece {
                            text: letters,
                            start: at,
                            end: next,
                        })
                    }
                }
            }
            Unit::Cjk(c) => {
                end_piece(&mut piece, &mut chunk);
                end_chunk(&mut chunk, &mut parsed);
                run.push((c, at, next));
            }
            Unit::Punctuation => {
                end_piece(&mut piece, &mut chunk);
                if !run.is_empty() {
                    parsed.cjk.push(std::mem::take(&mut run));
                }
            }
            Unit::Space => {
                end_piece(&mut piece, &mut chunk);
                end_chunk(&mut chunk, &mut parsed);
                if !run.is_empty() {
                    parsed.cjk.push(std::mem::take(&mut run));
                }
            }
        }
    }
    end_piece(&mut piece, &mut chunk);
    end_chunk(&mut chunk, &mut parsed);
    if !run.is_empty() {
        parsed.cjk.push(run);
    }
    parsed
}

/// Every token `text` is indexed under: pieces, joined pieces, joined neighbouring words, CJK
/// characters and pairs.
pub fn index_tokens(text: &str) -> Vec<Token> {
    let parsed = parse(text);
    let mut tokens = Vec::new();
    let joined = |pieces: &[Piece]| Token {
        text: pieces.iter().map(|piece| piece.text.as_str()).collect(),
        start: pieces[0].start,
        end: pieces[pieces.len() - 1].end,
        kind: TokenKind::Joined,
    };
    for (index, chunk) in parsed.chunks.iter().enumerate() {
        tokens.extend(chunk.iter().map(|piece| Token {
            text: piece.text.clone(),
            start: piece.start,
            end: piece.end,
            kind: TokenKind::Word,
        }));
        if chunk.len() > 1 {
            tokens.push(joined(chunk));
        }
        if let Some(next) = parsed.chunks.get(index + 1) {
            let pair: Vec<Piece> = chunk.iter().chain(next).cloned().collect();
            tokens.push(joined(&pair));
        }
    }
    for run in &parsed.cjk {
        for (index, &(c, start, end)) in run.iter().enumerate() {
            tokens.push(Token {
                text: c.to_string(),
                start,
                end,
                kind: TokenKind::Char,
            });
            if let Some(&(next, _, next_end)) = run.get(index + 1) {
                tokens.push(Token {
                    text: [c, next].iter().collect(),
                    start,
                    end: next_end,
                    kind: TokenKind::Pair,
                });
            }
        }
    }
    tokens
}

/// One word of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryWord {
    /// Folded text.
    pub text: String,
    /// A CJK character or pair: matched exactly, never with typos.
    pub cjk: bool,
}

/// A query broken into words, with the alternative readings of split and joined words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryWords {
    /// Every word, in order; all must match.
    pub words: Vec<QueryWord>,
    /// Alternative readings, each a list of words that must all match: a chunk's pieces
    /// joined (`spider-man` read as `spiderman`), two neighbouring words joined.
    pub alternatives: Vec<Vec<QueryWord>>,
    /// The same joins as spans: the words `from..to` read as one joined word.
    pub joins: Vec<(usize, usize, QueryWord)>,
    /// Whether the text ended inside a word (no space, no punctuation after it): its last
    /// word is still being typed and is matched as a prefix.
    pub typing: bool,
}

/// Breaks a query into words. Latin words keep their pieces apart (`ac/dc` is `ac` and `dc`);
/// a CJK run is its pairs (or its one character).
pub fn query_words(text: &str) -> QueryWords {
    let parsed = parse(text);
    let word = |text: String| QueryWord { text, cjk: false };
    let mut words: Vec<QueryWord> = Vec::new();
    let mut chunk_spans: Vec<(usize, usize)> = Vec::new();
    for chunk in &parsed.chunks {
        let first = words.len();
        words.extend(chunk.iter().map(|piece| word(piece.text.clone())));
        chunk_spans.push((first, words.len()));
    }
    for run in &parsed.cjk {
        if run.len() == 1 {
            words.push(QueryWord {
                text: run[0].0.to_string(),
                cjk: true,
            });
        }
        for pair in run.windows(2) {
            words.push(QueryWord {
                text: [pair[0].0, pair[1].0].iter().collect(),
                cjk: true,
            });
        }
    }
    let mut alternatives = Vec::new();
    let mut joins = Vec::new();
    let replaced = |from: usize, to: usize, joined: String| -> Vec<QueryWord> {
        let mut alternative = words[..from].to_vec();
        alternative.push(word(joined));
        alternative.extend_from_slice(&words[to..]);
        alternative
    };
    for &(from, to) in &chunk_spans {
        if to - from > 1 {
            let joined: String = words[from..to].iter().map(|w| w.text.as_str()).collect();
            joins.push((from, to, word(joined.clone())));
            alternatives.push(replaced(from, to, joined));
        }
    }
    for pair in chunk_spans.windows(2) {
        let (from, to) = (pair[0].0, pair[1].1);
        let joined: String = words[from..to].iter().map(|w| w.text.as_str()).collect();
        joins.push((from, to, word(joined.clone())));
        alternatives.push(replaced(from, to, joined));
    }
    let typing = text
        .chars()
        .next_back()
        .is_some_and(|c| matches!(unit_of(c), Unit::Letters(_)))
        && !parsed.chunks.is_empty();
    QueryWords {
        words,
        alternatives,
        joins,
        typing,
    }
}

/// `text` folded to one string of its pieces separated by spaces (for filters on a field's
/// whole value: a genre, an artist).
pub fn fold_key(text: &str) -> String {
    let parsed = parse(text);
    let mut key: Vec<String> = parsed
        .chunks
        .iter()
        .flatten()
        .map(|piece| piece.text.clone())
        .collect();
    key.extend(
        parsed
            .cjk
            .iter()
            .map(|run| run.iter().map(|(c, _, _)| c).collect()),
    );
    key.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tokens: &[Token], kind: TokenKind) -> Vec<String> {
        tokens
            .iter()
            .filter(|token| token.kind == kind)
            .map(|token| token.text.clone())
            .collect()
    }

    #[test]
    fn latin_letters_fold_to_ascii() {
        assert_eq!(fold_key("Beyoncé"), "beyonce");
        assert_eq!(fold_key("Dødheimsgard"), "dodheimsgard");
        assert_eq!(fold_key("Dvořák"), "dvorak");
        assert_eq!(
            fold_key("Ærøskøbing Œuvre Straße Łódź"),
            "aeroskobing oeuvre strasse lodz"
        );
        assert_eq!(fold_key("ＡＢＣ１２３"), "abc123");
        assert_eq!(fold_key("Mötley Crüe"), "motley crue");
    }

    #[test]
    fn cyrillic_and_greek_are_transliterated() {
        assert_eq!(fold_key("Кино"), "kino");
        assert_eq!(fold_key("Земфира"), "zemfira");
        assert_eq!(fold_key("Μίκης Θεοδωράκης"), "mikes theodorakes");
    }

    #[test]
    fn punctuation_splits_and_joins() {
        let tokens = index_tokens("R.E.M.");
        assert_eq!(texts(&tokens, TokenKind::Word), ["r", "e", "m"]);
        assert_eq!(texts(&tokens, TokenKind::Joined), ["rem"]);
        assert_eq!(texts(&index_tokens("AC/DC"), TokenKind::Joined), ["acdc"]);
        assert_eq!(texts(&index_tokens("a-ha"), TokenKind::Joined), ["aha"]);
        let spider = index_tokens("Spider Man");
        assert_eq!(texts(&spider, TokenKind::Joined), ["spiderman"]);
        let tokens = index_tokens("Don't Stop");
        assert_eq!(texts(&tokens, TokenKind::Word), ["don", "t", "stop"]);
        assert_eq!(texts(&tokens, TokenKind::Joined), ["dont", "dontstop"]);
    }

    #[test]
    fn offsets_point_into_the_original() {
        let text = "Beyoncé — Halo";
        for token in index_tokens(text) {
            assert!(text.is_char_boundary(token.start) && text.is_char_boundary(token.end));
        }
        let halo = index_tokens(text)
            .into_iter()
            .find(|token| token.text == "halo")
            .unwrap();
        assert_eq!(&text[halo.start..halo.end], "Halo");
    }

    #[test]
    fn cjk_is_characters_and_pairs() {
        let tokens = index_tokens("我爱北京天安门");
        assert_eq!(texts(&tokens, TokenKind::Char).len(), 7);
        assert!(texts(&tokens, TokenKind::Pair).contains(&"北京".to_owned()));
        let query = query_words("北京天");
        let words: Vec<&str> = query.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, ["北京", "京天"]);
        assert!(query.words.iter().all(|w| w.cjk));
        assert_eq!(query_words("京").words[0].text, "京");
    }

    #[test]
    fn emoji_and_symbols_separate_words() {
        assert_eq!(fold_key("🔥Fire🔥 & Ice"), "fire ice");
        assert!(query_words("🔥🎸").words.is_empty());
        assert!(query_words("!!! ... ???").words.is_empty());
    }

    #[test]
    fn queries_offer_split_and_joined_readings() {
        let query = query_words("spider-man");
        let words: Vec<&str> = query.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, ["spider", "man"]);
        assert_eq!(query.alternatives.len(), 1);
        assert_eq!(query.alternatives[0][0].text, "spiderman");
        let query = query_words("rage machine");
        assert_eq!(query.alternatives[0][0].text, "ragemachine");
        assert!(query.typing);
        assert!(!query_words("rage ").typing);
    }
}
