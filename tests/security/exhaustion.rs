//! Exhaustion and parsing: slow clients, tickets, rate limits, headers built from stored data, login timing, file metadata (review items 8 to 13).
