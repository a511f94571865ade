//! Running the simulator against a live stack: [`simulate`] replays studies as a gateway and
//! reads them as radiologists ([`readers`]) while sampling consumer lag ([`lag`]) and showing
//! progress, then hands the measurements to the report.

pub mod lag;
mod progress;
pub mod readers;
pub mod simulate;
