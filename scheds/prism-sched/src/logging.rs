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

/// Say what a poll of the bus slots changed (both schedulers poll once a
/// second): the bus attached, gone (then `without` says what the scheduler
/// goes without until it is back), or why the poll failed.
pub fn bus_poll(result: Result<prism_bus::consumer::SlotChange>, without: &str) {
    use prism_bus::consumer::SlotChange;
    match result {
        Ok(SlotChange::Attached { identity_map_id }) => {
            log::info!("bus attached (map id {identity_map_id})")
        }
        Ok(SlotChange::Detached) => log::warn!("bus gone: no {without} until it is back"),
        Ok(SlotChange::None) => {}
        Err(e) => log::warn!("bus: {e}"),
    }
}
