//! What the dashboard shows, drawn from a `Model` alone, so any size can be drawn in a test.

use jiff::Timestamp;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, TableState};

use crate::agent::Kind;
use crate::catalog::{Catalog, Slot};
use crate::pool::{self, Standing};
use crate::timefmt;
use crate::usage::{FIVE_HOUR, SEVEN_DAY};

/// One slot as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct Row {
    pub agent: String,
    pub name: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub active: bool,
    pub long_lived: bool,
    /// (percent used, reset) of the 5-hour and the weekly window.
    pub five_hour: Option<(f64, Option<Timestamp>)>,
    pub weekly: Option<(f64, Option<Timestamp>)>,
    pub expires_at: Option<Timestamp>,
    pub needs_login: bool,
    /// Until when a spent window leaves the slot without quota.
    pub spent_until: Option<Timestamp>,
}

impl Row {
    pub fn of(slot: &Slot, active: bool, now: Timestamp) -> Self {
        let window = |id: &str| {
            let window = slot.usage.as_ref()?.window(id)?;
            // A window whose reset has passed is empty again.
            let percent = match window.resets_at {
                Some(reset) if reset <= now => 0.0,
                _ => window.percent?,
            };
            Some((percent, window.resets_at.filter(|at| *at > now)))
        };
        Self {
            agent: slot.agent.clone(),
            name: slot.name.clone(),
            email: slot.email.clone(),
            plan: slot.subscription_type.clone(),
            active,
            long_lived: slot.kind == Kind::LongLived,
            five_hour: window(FIVE_HOUR),
            weekly: window(SEVEN_DAY),
            expires_at: slot.expires_at,
            needs_login: slot.needs_login.is_some(),
            spent_until: pool::spent_until(Standing::from(slot), now),
        }
    }
}

/// A question the dashboard is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// The new name being typed for the selected slot.
    Rename(String),
    /// Remove the selected slot? (y/n)
    Remove,
    /// The name for a long-lived token `claude setup-token` will make.
    Generate(String),
}

#[derive(Debug, Clone)]
pub struct Model {
    pub rows: Vec<Row>,
    pub selected: usize,
    /// What the last action came to, one line.
    pub status: Option<String>,
    pub prompt: Option<Prompt>,
    pub now: Timestamp,
}

impl Model {
    /// Every slot of every agent, in `list` order, agent by agent.
    pub fn from_catalog(catalog: &Catalog, now: Timestamp) -> Self {
        let mut rows = Vec::new();
        for agent in crate::agent::Agent::ALL {
            let active = catalog.active_id(agent.name());
            rows.extend(
                catalog
                    .slots_of(agent.name())
                    .map(|slot| Row::of(slot, active == Some(slot.id.as_str()), now)),
            );
        }
        Self {
            rows,
            selected: 0,
            status: None,
            prompt: None,
            now,
        }
    }

    pub fn selected_row(&self) -> Option<&Row> {
        self.rows.get(self.selected)
    }
}

/// The keys, short enough for 80 columns.
const KEYS: &str = "↑↓ select  u use  r refresh  n rename  d remove  a add  g token  q quit";

pub fn draw(frame: &mut Frame<'_>, model: &Model) {
    let area = frame.area();
    let wide = area.width >= 120;
    let [title, table, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);

    let actives: Vec<String> = crate::agent::Agent::ALL
        .iter()
        .filter_map(|agent| {
            let row = model
                .rows
                .iter()
                .find(|row| row.active && row.agent == agent.name())?;
            Some(format!("{agent}: {}", row.name))
        })
        .collect();
    let heading = match actives.is_empty() {
        true => format!("tokenkeeper  {} slots", model.rows.len()),
        false => format!(
            "tokenkeeper  {} slots  active {}",
            model.rows.len(),
            actives.join(", ")
        ),
    };
    frame.render_widget(
        Paragraph::new(heading).style(Style::new().add_modifier(Modifier::BOLD)),
        title,
    );

    let bar_width = if wide { 20 } else { 6 };
    let mut header = vec!["", "agent", "slot"];
    if wide {
        header.extend(["email", "plan"]);
    }
    header.extend(["5-hour", "weekly", "expires", "state"]);
    let rows: Vec<TableRow<'_>> = model
        .rows
        .iter()
        .map(|row| {
            let mut cells = vec![
                Cell::from(if row.active { "*" } else { " " }),
                Cell::from(row.agent.clone()),
                Cell::from(row.name.clone()),
            ];
            if wide {
                cells.push(Cell::from(row.email.clone().unwrap_or_default()));
                cells.push(Cell::from(row.plan.clone().unwrap_or_default()));
            }
            cells.push(Cell::from(window(row.five_hour, bar_width, model.now)));
            cells.push(Cell::from(window(row.weekly, bar_width, model.now)));
            cells.push(Cell::from(expiry(row, model.now)));
            cells.push(Cell::from(state(row, model.now, wide)));
            TableRow::new(cells)
        })
        .collect();
    // Bar, percent, and the time until it resets (`3d 18h`).
    let window_width = bar_width + 12;
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Length(6),
        Constraint::Length(if wide { 16 } else { 8 }),
    ];
    if wide {
        widths.extend([Constraint::Min(20), Constraint::Length(6)]);
    }
    widths.extend([
        Constraint::Length(window_width),
        Constraint::Length(window_width),
        Constraint::Length(7),
        Constraint::Min(11),
    ]);
    let table_widget = Table::new(rows, widths)
        .header(TableRow::new(header).style(Style::new().add_modifier(Modifier::UNDERLINED)))
        .block(Block::new().borders(Borders::TOP | Borders::BOTTOM))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
    let mut state =
        TableState::default().with_selected((!model.rows.is_empty()).then_some(model.selected));
    frame.render_stateful_widget(table_widget, table, &mut state);

    let line = match &model.prompt {
        Some(Prompt::Rename(text)) => {
            format!("new name: {text}_   (enter to rename, esc to cancel)")
        }
        Some(Prompt::Remove) => format!(
            "remove slot '{}'? (y/n)",
            model.selected_row().map_or("", |row| row.name.as_str())
        ),
        Some(Prompt::Generate(text)) => {
            format!(
                "name for the new long-lived token: {text}_   (enter to run claude setup-token)"
            )
        }
        None => model.status.clone().unwrap_or_default(),
    };
    frame.render_widget(Paragraph::new(line), status);
    frame.render_widget(
        Paragraph::new(KEYS).style(Style::new().fg(Color::DarkGray)),
        keys,
    );
}

/// `████░░░░  52% 1h 5m`: the share used, and how long until it resets.
fn window(reading: Option<(f64, Option<Timestamp>)>, width: u16, now: Timestamp) -> Line<'static> {
    let Some((percent, reset)) = reading else {
        return Line::from("-");
    };
    let filled = ((percent.clamp(0.0, 100.0) / 100.0) * f64::from(width)).round() as usize;
    let bar = format!(
        "{}{}",
        "█".repeat(filled),
        "░".repeat(usize::from(width) - filled)
    );
    let colour = match percent {
        p if p >= 95.0 => Color::Red,
        p if p >= 80.0 => Color::Yellow,
        _ => Color::Green,
    };
    let resets = reset.map_or(String::new(), |at| short_span(at, now));
    Line::from(vec![
        Span::styled(bar, Style::new().fg(colour)),
        Span::raw(format!(" {:>3.0}% {resets}", percent)),
    ])
}

fn expiry(row: &Row, now: Timestamp) -> String {
    match row.expires_at {
        Some(at) if at <= now && !row.long_lived => "renews".to_string(),
        Some(at) if at <= now => "expired".to_string(),
        Some(at) => short_span(at, now),
        None => "-".to_string(),
    }
}

fn state(row: &Row, now: Timestamp, wide: bool) -> Line<'static> {
    if row.needs_login {
        return Line::styled("needs login", Style::new().fg(Color::Red));
    }
    if let Some(until) = row.spent_until {
        // Narrow, the window's own countdown says when.
        let back = if until == Timestamp::MAX || !wide {
            "cooled down".to_string()
        } else {
            format!("cooled down, back in {}", short_span(until, now))
        };
        return Line::styled(back, Style::new().fg(Color::Yellow));
    }
    Line::from("ok")
}

/// `3h 5m`, `12m`, `40s`: until `at`.
fn short_span(at: Timestamp, now: Timestamp) -> String {
    let text = timefmt::relative(at, now);
    text.strip_prefix("in ").unwrap_or(&text).to_string()
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    fn rows(now: Timestamp) -> Vec<Row> {
        let hours = |h: i64| Some(now + jiff::SignedDuration::from_hours(h));
        vec![
            Row {
                agent: "claude".into(),
                name: "work".into(),
                email: Some("work@example.com".into()),
                plan: Some("max".into()),
                active: true,
                long_lived: false,
                five_hour: Some((42.0, hours(2))),
                weekly: Some((81.0, hours(50))),
                expires_at: hours(6),
                needs_login: false,
                spent_until: None,
            },
            Row {
                agent: "claude".into(),
                name: "home".into(),
                email: Some("home@example.com".into()),
                plan: Some("pro".into()),
                active: false,
                long_lived: false,
                five_hour: Some((100.0, hours(3))),
                weekly: Some((20.0, hours(90))),
                expires_at: hours(1),
                needs_login: false,
                spent_until: hours(3),
            },
            Row {
                agent: "codex".into(),
                name: "dev".into(),
                email: Some("dev@example.com".into()),
                plan: Some("plus".into()),
                active: true,
                long_lived: false,
                five_hour: None,
                weekly: None,
                expires_at: None,
                needs_login: true,
                spent_until: None,
            },
        ]
    }

    fn screen(width: u16, height: u16, model: &Model) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, model)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    fn model() -> Model {
        let now = Timestamp::now();
        Model {
            rows: rows(now),
            selected: 1,
            status: Some("claude now uses slot 'work'".into()),
            prompt: None,
            now,
        }
    }

    #[test]
    fn at_80_by_24_every_slot_its_bars_its_state_and_the_keys_fit() {
        let lines = screen(80, 24, &model());
        let text = lines.join("\n");
        assert!(
            lines[0].contains("active claude: work, codex: dev"),
            "{text}"
        );
        for needle in [
            "work",
            "home",
            "dev",
            "42%",
            "81%",
            "100%",
            "needs login",
            "cooled down",
            "claude now uses slot 'work'",
            "q quit",
            "g token",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        // The 5-hour bar of 'work' (42 % of 8 cells) and a full one for 'home'.
        assert!(text.contains("███░░░  42%"), "{text}");
        assert!(text.contains("██████ 100%"), "{text}");
        // Narrow: no email column.
        assert!(!text.contains("work@example.com"), "{text}");
    }

    #[test]
    fn at_200_by_50_emails_plans_and_long_bars_show() {
        let lines = screen(200, 50, &model());
        let text = lines.join("\n");
        for needle in [
            "work@example.com",
            "home@example.com",
            "max",
            "plus",
            "needs login",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        assert!(
            text.contains(&format!("{}{}", "█".repeat(8), "░".repeat(12))),
            "{text}"
        );
    }

    #[test]
    fn prompts_take_the_status_line() {
        let mut model = model();
        model.prompt = Some(Prompt::Remove);
        let text = screen(80, 24, &model).join("\n");
        assert!(text.contains("remove slot 'home'? (y/n)"), "{text}");
        model.prompt = Some(Prompt::Rename("ho".into()));
        let text = screen(80, 24, &model).join("\n");
        assert!(text.contains("new name: ho_"), "{text}");
    }
}
