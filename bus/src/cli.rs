//! What every Prism binary's command line shares: its man page, generated
//! from its clap definition. `PRISM_MAN_PAGE=1 <binary>` prints the page
//! (roff, section 8) and exits; the install (meson.build) builds the pages
//! this way, so they never drift from `--help`.

use std::io::Write;

/// The environment variable that asks for the man page.
pub const MAN_PAGE_ENV: &str = "PRISM_MAN_PAGE";

/// Parse the command line as `T`, or, with `PRISM_MAN_PAGE` set, print
/// `T`'s man page and exit.
pub fn parse_or_print_man<T: clap::Parser>() -> T {
    if std::env::var_os(MAN_PAGE_ENV).is_some() {
        let mut out = std::io::stdout().lock();
        let status = match man_page(T::command()).and_then(|page| out.write_all(&page)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("writing the man page: {e}");
                1
            }
        };
        std::process::exit(status);
    }
    T::parse()
}

/// `cmd`'s man page, section 8 (system administration).
pub fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).section("8").render(&mut page)?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    #[command(name = "demo", about = "A demo of the man page")]
    struct Demo {
        /// Where the bus is pinned.
        #[arg(long)]
        bus_dir: Option<String>,
    }

    #[test]
    fn the_page_carries_the_name_section_and_options() {
        let page = String::from_utf8(man_page(<Demo as clap::CommandFactory>::command()).unwrap())
            .unwrap();
        assert!(page.contains(".TH demo 8"), "{page}");
        assert!(page.contains("A demo of the man page"));
        assert!(page.contains("bus\\-dir") && page.contains("Where the bus is pinned"));
    }
}
