//! What sluice's fuzz targets share: frame building and independent
//! checksum checks (`net`), the pipeline target's world (`pipeline`), and
//! the control state's invariants (`control`).

pub mod adjust;
pub mod control;
pub mod net;
pub mod pipeline;
