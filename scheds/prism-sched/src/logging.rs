//! Logging as the scx schedulers do it: simplelog on stderr, no clutter.

use anyhow::Result;
use simplelog::LevelFilter;

pub fn init(verbose: bool) -> Result<()> {
    let mut cfg = simplelog::ConfigBuilder::new();
    cfg.set_time_level(LevelFilter::Error)
        .set_location_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off);
    simplelog::TermLogger::init(
        if verbose {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        },
        cfg.build(),
        simplelog::TerminalMode::Stderr,
        simplelog::ColorChoice::Auto,
    )?;
    Ok(())
}
