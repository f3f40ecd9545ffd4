//! The box's own settings and its first-boot claim: the name, description and icon its
//! administrators set, its registration mode (the configuration's until changed), the
//! setup code made at first start, and claiming the box from a browser, which makes its
//! first administrator in one commit with the box's name and mode.

use super::accounts::Registration;
use super::rate::RateLimiter;
use super::{check_name, check_text, invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Tx};
use crate::system::now;
use serde::{Deserialize, Serialize};

/// The one row of [`BOX_SETTINGS`].
const BOX_KEY: &str = "box";

/// The setup code's alphabet: no 0/O, 1/I/L, so it is read off a screen or paper
/// without doubt; 32 symbols, 5 bits each.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Symbols in a setup code, shown in groups of four (60 bits: never guessed within the
/// rate limits).
const CODE_LEN: usize = 12;

/// Largest icon, bytes (decoded).
pub const MAX_ICON_BYTES: usize = 32 * 1024;
/// Image types an icon may have. Not SVG: the icon is served from the box's origin, and
/// an SVG opened there could run script.
const ICON_TYPES: &[&str] = &["image/png", "image/jpeg", "image/webp", "image/gif"];

/// The box's settings row (defaults when never written).
pub fn settings(tx: &Tx) -> Result<BoxSettings> {
    Ok(tx.get(BOX_SETTINGS, BOX_KEY)?.unwrap_or_default())
}

fn save(tx: &Tx, settings: &BoxSettings) -> Result<()> {
    tx.put(BOX_SETTINGS, BOX_KEY, settings)?;
    Ok(())
}

/// Marks the box claimed (its first administrator exists) and forgets the setup code;
/// called in the commit that made the administrator.
pub fn mark_claimed(tx: &Tx) -> Result<()> {
    let mut s = settings(tx)?;
    if s.claimed_at.is_none() || s.setup_code.is_some() {
        s.claimed_at.get_or_insert(now());
        s.setup_code = None;
        save(tx, &s)?;
    }
    Ok(())
}

/// A fresh setup code, `XXXX-XXXX-XXXX`.
pub fn make_setup_code() -> String {
    let mut bytes = [0u8; CODE_LEN];
    crate::system::random_bytes(&mut bytes);
    let symbols: Vec<char> = bytes
        .iter()
        // 256 is a multiple of 32: no bias.
        .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
        .collect();
    symbols
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A typed code as compared: upper case, without spaces or dashes.
fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Compares in time independent of where the first difference is.
fn same_code(typed: &str, stored: &str) -> bool {
    let (a, b) = (normalize_code(typed), normalize_code(stored));
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// What anyone may know of the box (in `/.well-known/hearth`).
#[derive(Clone, Debug, Serialize)]
pub struct BoxInfo {
    /// The box's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Whether it has an icon (at `GET /api/v1/box/icon`).
    pub icon: bool,
    /// Who may register.
    pub registration: RegistrationMode,
    /// Whether the box has its first administrator.
    pub claimed: bool,
    /// Whether its web client offers the setup (unclaimed, and `[setup] from_browser`).
    pub setup: bool,
    /// Whether claiming needs the setup code (else the first visitor claims it).
    pub setup_code_required: bool,
}

/// What claiming the box sends: the setup code, the box's name and mode, and its owner's
/// account exactly as registration takes it (K_id made and wrapped by the browser).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The setup code (unless the first visitor claims).
    #[serde(default)]
    pub code: Option<String>,
    /// The box's name.
    pub name: String,
    /// Who may register from now on.
    pub registration: RegistrationMode,
    /// The owner's account.
    pub owner: Registration,
}

/// A change of the box's settings; absent fields stay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxUpdate {
    /// The name.
    pub name: Option<String>,
    /// The description.
    pub description: Option<String>,
    /// The icon as a `data:image/…;base64,…` URL, or `null`/`""` to remove it.
    #[serde(default, deserialize_with = "some_or_null")]
    pub icon: Option<Option<String>>,
    /// Who may register.
    pub registration: Option<RegistrationMode>,
}

/// Tells an absent field (`None`) from a `null` one (`Some(None)`).
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The box's settings as administrators see them.
#[derive(Debug, Serialize)]
pub struct BoxSettingsView {
    /// The name.
    pub name: String,
    /// The description.
    pub description: String,
    /// The icon as a data URL, if any.
    pub icon: Option<String>,
    /// Who may register.
    pub registration: RegistrationMode,
    /// Unix seconds the box was claimed.
    pub claimed_at: Option<u64>,
}

/// Reads a `data:image/…;base64,…` icon.
fn parse_icon(url: &str) -> Result<(String, Vec<u8>)> {
    use base64::Engine;
    let bad = || {
        invalid(
            "invalid_icon",
            "icon must be a data URL of a PNG, JPEG, WebP or GIF image (data:image/png;base64,…)",
        )
    };
    let rest = url.strip_prefix("data:").ok_or_else(bad)?;
    let (kind, data) = rest.split_once(";base64,").ok_or_else(bad)?;
    if !ICON_TYPES.contains(&kind) {
        return Err(bad());
    }
    if data.len() > MAX_ICON_BYTES * 4 / 3 + 4 {
        return Err(invalid(
            "too_long",
            format!("the icon is larger than {MAX_ICON_BYTES} bytes"),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| bad())?;
    if bytes.is_empty() || bytes.len() > MAX_ICON_BYTES {
        return Err(invalid(
            "too_long",
            format!("the icon must be 1 to {MAX_ICON_BYTES} bytes"),
        ));
    }
    Ok((kind.to_string(), bytes))
}

fn icon_url((kind, bytes): &(String, Vec<u8>)) -> String {
    use base64::Engine;
    format!(
        "data:{kind};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A local administrator (homed here, not disabled) exists.
fn has_admin(tx: &Tx) -> Result<bool> {
    for (_, id) in tx.rows(USERNAME_USER, crate::storage::Rows::all())? {
        let Ok(bytes) = <[u8; 32]>::try_from(id.as_slice()) else {
            continue;
        };
        let user = UserId(bytes);
        if tx
            .get(USER, user)?
            .is_some_and(|u| u.is_admin && u.homeserver.is_empty())
            && !tx.contains(USER_DISABLED, user)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Services {
    /// The box's registration mode: its own, else the configuration's.
    pub fn registration_mode(&self) -> Result<RegistrationMode> {
        let stored = self.store.read(settings)?;
        Ok(stored
            .registration
            .unwrap_or(self.configured_registration()))
    }

    fn configured_registration(&self) -> RegistrationMode {
        match self.config.registration {
            crate::config::Registration::Open => RegistrationMode::Open,
            crate::config::Registration::Invite => RegistrationMode::Invite,
            crate::config::Registration::Closed => RegistrationMode::Closed,
        }
    }

    /// The box's name: its own, else the configuration's.
    pub fn box_name(&self) -> Result<String> {
        let stored = self.store.read(settings)?;
        Ok(stored.name.unwrap_or_else(|| self.config.name.clone()))
    }

    /// What anyone may know of the box.
    pub fn box_info(&self) -> Result<BoxInfo> {
        let s = self.store.read(settings)?;
        let claimed = s.claimed_at.is_some();
        Ok(BoxInfo {
            name: s.name.clone().unwrap_or_else(|| self.config.name.clone()),
            description: s.description.clone(),
            icon: s.icon.is_some(),
            registration: s.registration.unwrap_or(self.configured_registration()),
            claimed,
            setup: !claimed && self.config.setup.from_browser,
            setup_code_required: !self.config.setup.first_visitor_claims,
        })
    }

    /// The icon's type and bytes, if the box has one.
    pub fn box_icon(&self) -> Result<Option<(String, Vec<u8>)>> {
        Ok(self.store.read(settings)?.icon)
    }

    /// Brings the claim state up to date at start: a box with an administrator (made
    /// before claims existed, or by `hearth user add --admin`) is claimed; an unclaimed
    /// one that offers the setup with a code gets its code now, kept until the claim.
    /// Returns the code while one is needed.
    pub async fn prepare_setup(&self) -> Result<Option<String>> {
        let wants_code = self.config.setup.from_browser && !self.config.setup.first_visitor_claims;
        let fresh = make_setup_code();
        self.store
            .write(move |tx| {
                let mut s = settings(tx)?;
                if s.claimed_at.is_some() {
                    return Ok(None);
                }
                if has_admin(tx)? {
                    mark_claimed(tx)?;
                    return Ok(None);
                }
                if !wants_code {
                    return Ok(None);
                }
                if s.setup_code.is_none() {
                    s.setup_code = Some(fresh);
                    save(tx, &s)?;
                }
                Ok(s.setup_code)
            })
            .await
    }

    /// The setup code while the box is unclaimed and has one.
    pub fn setup_code(&self) -> Result<Option<String>> {
        let s = self.store.read(settings)?;
        Ok(s.setup_code.filter(|_| s.claimed_at.is_none()))
    }

    /// Whether the box has been claimed.
    pub fn claimed(&self) -> Result<bool> {
        Ok(self.store.read(settings)?.claimed_at.is_some())
    }

    /// Claims the box from a browser: checks the setup code (wrong ones counted per
    /// address and overall in `limiter`), then makes the owner an administrator, and sets
    /// the box's name and registration mode, all in one commit that first checks the box
    /// is still unclaimed (so of two claims at once exactly one wins).
    pub async fn claim(&self, claim: Claim, limiter: &RateLimiter, address: &str) -> Result<User> {
        let already = || Error::Gone {
            code: "already_claimed",
            message: "this box has been set up already; sign in instead".into(),
        };
        let setup = &self.config.setup;
        if !setup.from_browser {
            return Err(Error::Refused {
                code: "setup_disabled",
                message: "this box is set up from its console (hearth user add --admin)".into(),
            });
        }
        let stored = self.store.read(settings)?;
        if stored.claimed_at.is_some() {
            return Err(already());
        }
        if !setup.first_visitor_claims {
            let t = now();
            let by_address = format!("setup:addr:{address}");
            limiter.check(&by_address, setup.attempts_per_address_hour, t)?;
            limiter.check("setup:all", setup.attempts_per_hour, t)?;
            let typed = claim.code.as_deref().unwrap_or("");
            let right = stored
                .setup_code
                .as_deref()
                .is_some_and(|code| same_code(typed, code));
            if !right {
                limiter.hit(by_address, setup.attempts_per_address_hour, 3600, t)?;
                limiter.hit("setup:all".into(), setup.attempts_per_hour, 3600, t)?;
                return Err(Error::Refused {
                    code: "wrong_setup_code",
                    message: "that is not this box's setup code: read it again from \
                              hearth-setup.txt on the SD card's boot partition, the console, \
                              or `hearth setup-code`"
                        .into(),
                });
            }
        }
        let name = check_name("name", &claim.name, self.config.limits.max_name_chars)?;
        let registration = claim.registration;
        let account = self
            .check_account(&claim.owner, "the owner's browser", true)
            .await?;
        self.commit_account(
            account,
            move |tx| match settings(tx)?.claimed_at {
                Some(_) => Err(already()),
                None => Ok(()),
            },
            move |tx, _| {
                let mut s = settings(tx)?;
                s.name = Some(name.clone());
                s.registration = Some(registration);
                s.claimed_at = Some(now());
                s.setup_code = None;
                save(tx, &s)
            },
        )
        .await
    }

    /// The box's settings for its administrators.
    pub fn box_settings_view(&self) -> Result<BoxSettingsView> {
        let s = self.store.read(settings)?;
        Ok(BoxSettingsView {
            name: s.name.clone().unwrap_or_else(|| self.config.name.clone()),
            description: s.description.clone(),
            icon: s.icon.as_ref().map(icon_url),
            registration: s.registration.unwrap_or(self.configured_registration()),
            claimed_at: s.claimed_at,
        })
    }

    /// Changes the box's settings (the caller checked the actor administers the box).
    pub async fn update_box_settings(&self, update: BoxUpdate) -> Result<BoxSettingsView> {
        let limits = &self.config.limits;
        let name = update
            .name
            .map(|n| check_name("name", &n, limits.max_name_chars))
            .transpose()?;
        let description = update
            .description
            .map(|d| check_text("description", &d, limits.max_text_chars))
            .transpose()?;
        let icon = match update.icon {
            None => None,
            Some(None) => Some(None),
            Some(Some(url)) if url.is_empty() => Some(None),
            Some(Some(url)) => Some(Some(parse_icon(&url)?)),
        };
        let registration = update.registration;
        self.store
            .write(move |tx| {
                let mut s = settings(tx)?;
                if let Some(v) = name {
                    s.name = Some(v);
                }
                if let Some(v) = description {
                    s.description = v;
                }
                if let Some(v) = icon {
                    s.icon = v;
                }
                if let Some(v) = registration {
                    s.registration = Some(v);
                }
                save(tx, &s)
            })
            .await?;
        self.box_settings_view()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_codes_are_three_groups_of_four_unambiguous_symbols() {
        let code = make_setup_code();
        assert_eq!(code.len(), 14);
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), 3);
        for group in groups {
            assert_eq!(group.len(), 4);
            assert!(group.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
        }
        assert_ne!(make_setup_code(), code);
    }

    #[test]
    fn typed_codes_ignore_case_spaces_and_dashes() {
        assert!(same_code("abcd efgh-jkmn", "ABCD-EFGH-JKMN"));
        assert!(!same_code("ABCD-EFGH-JKMP", "ABCD-EFGH-JKMN"));
        assert!(!same_code("", "ABCD-EFGH-JKMN"));
        assert!(!same_code("ABCD-EFGH-JKMNP", "ABCD-EFGH-JKMN"));
    }

    #[test]
    fn icons_are_bounded_raster_data_urls() {
        assert!(parse_icon("data:image/png;base64,iVBORw0KGgo=").is_ok());
        assert!(parse_icon("data:image/svg+xml;base64,PHN2Zz4=").is_err());
        assert!(parse_icon("https://example.com/x.png").is_err());
        assert!(parse_icon("data:image/png;base64,!!!").is_err());
        let big = format!("data:image/png;base64,{}", "A".repeat(MAX_ICON_BYTES * 2));
        assert!(parse_icon(&big).is_err());
    }
}
