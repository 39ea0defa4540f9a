//! Small text helpers shared by the renderers.

/// At most `max` characters of `s`, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The first line of `s`, clipped to `max` characters.
pub fn first_line(s: &str, max: usize) -> String {
    clip(s.lines().next().unwrap_or(""), max)
}
