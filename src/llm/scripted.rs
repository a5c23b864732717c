//! A provider that replays a script (being written).
