//! Inside a guild: event audiences (resume and live), overwrite and role escalation (review items 5, 6, 7).
