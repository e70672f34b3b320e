//! The bench report's figure, drawn with plotters: mean time per call against buffer size at 1 thread, map on
//! the left and unmap on the right, one line per configuration, with a title, labelled axes and a legend. Written
//! as SVG and PNG.
//!
//! plotters draws text with ab_glyph from a TrueType file, so the figure needs no fontconfig: DejaVu Sans from
//! Debian's [`FONT_PACKAGE`], which `cargo xtask deps` installs.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::plan::{Config, size_label};
use super::stats::Record;

/// The TrueType font the figure's text is drawn with.
pub const FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The Debian package that ships [`FONT_FILE`].
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";
/// The figure's files in the output directory: `cost.svg` and `cost.png`.
pub const FILES: [&str; 2] = ["cost.svg", "cost.png"];

/// Width and height of the figure in pixels (SVG user units).
const SIZE: (u32, u32) = (1200, 520);
/// The font family name the font is registered under (plotters' default family for `("sans-serif", size)`).
const FAMILY: &str = "sans-serif";
/// The x range when a panel has no points: 4 KiB to 2 MiB, the full plan's sizes.
const DEFAULT_SIZES: (f64, f64) = (4096.0, 2097152.0);

/// Registers [`FONT_FILE`] with plotters, once per process; an error names the package to install.
fn register_font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = fs::read(FONT_FILE).map_err(|e| {
            format!(
                "the bench figure's font {FONT_FILE} cannot be read ({e}): `cargo xtask deps` installs it \
                 (Debian package {FONT_PACKAGE})"
            )
        })?;
        // plotters keeps fonts for the whole process: the bytes must live as long.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT_FILE} is not a TrueType font plotters can read"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// One configuration's line in one panel: (buffer size in bytes, mean µs per call), by size.
fn points(records: &[Record], cfg: Config, op: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| {
            r.config == cfg
                && r.workload.starts_with(&format!("{op} "))
                && r.workload.ends_with(" t1")
                && !r.workload.contains("sg16")
        })
        .filter_map(|r| r.extra.get("size").map(|s| (*s, r.median / 1e3)))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Draws the figure of `records` on `root`.
fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, records: &[Record]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(
        "Per-call cost against buffer size (median over the rounds)",
        (FAMILY, 24),
    )?;
    let configs: Vec<Config> = Config::ALL.into_iter().filter(|c| c.runs_micro()).collect();
    let lines: Vec<Vec<Vec<(f64, f64)>>> = ["map", "unmap"]
        .iter()
        .map(|op| configs.iter().map(|&c| points(records, c, op)).collect())
        .collect();
    let all = || lines.iter().flatten().flatten();
    // x: log2 of the size, so that each power of two is one step, labelled at every power of two.
    let (lo, hi) = all()
        .map(|p| p.0)
        .fold(None, |m: Option<(f64, f64)>, x| {
            Some(m.map_or((x, x), |(a, b)| (a.min(x), b.max(x))))
        })
        .unwrap_or(DEFAULT_SIZES);
    let x: Range<f64> = lo.log2() - 0.5..hi.log2() + 0.5;
    let powers = (hi.log2() - lo.log2()).round() as usize + 1;
    let ymax = all().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let panels = root.split_evenly((1, 2));
    for ((op, panel), series) in ["map", "unmap"].iter().zip(&panels).zip(&lines) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{op}, 1 thread"), (FAMILY, 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x.clone(), 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("buffer size (bytes, log₂ scale)")
            .y_desc("mean time per call (µs)")
            // At most one label per power of two: plotters then puts them on the integers.
            .x_labels(powers + 1)
            .x_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-9 {
                    size_label(v.exp2().round() as u64)
                } else {
                    String::new()
                }
            })
            .axis_desc_style((FAMILY, 16))
            .label_style((FAMILY, 13))
            .draw()?;
        for (cfg, pts) in configs.iter().zip(series) {
            let [r, g, b] = cfg.color();
            let color = RGBColor(r, g, b);
            let at = |&(s, us): &(f64, f64)| (s.log2(), us);
            chart
                .draw_series(LineSeries::new(pts.iter().map(at), color.stroke_width(2)))?
                .label(cfg.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
            chart.draw_series(pts.iter().map(|p| Circle::new(at(p), 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Writes the figure of `records` to `dir` as [`FILES`] (SVG, then PNG); returns their paths.
pub fn plot(records: &[Record], dir: &Path) -> Result<Vec<PathBuf>> {
    register_font()?;
    let files = FILES.map(|f| dir.join(f));
    draw(
        &SVGBackend::new(&files[0], SIZE).into_drawing_area(),
        records,
    )?;
    draw(
        &BitMapBackend::new(&files[1], SIZE).into_drawing_area(),
        records,
    )?;
    Ok(files.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::parse::Sample;
    use crate::bench::stats::aggregate;

    /// Records of every configuration that runs the microbenchmark: map and unmap at 4K..2M, 1 thread, and a
    /// 2-thread and an sg16 record that the figure leaves out.
    fn records() -> Vec<Record> {
        let mut samples = Vec::new();
        for (k, cfg) in Config::ALL.into_iter().enumerate() {
            for (op, base) in [("map", 2000.0), ("unmap", 3000.0)] {
                for shift in 12..=21 {
                    let size = 1u64 << shift;
                    let mut s = Sample {
                        workload: format!("{op} {} t1", size_label(size)),
                        value: base + 500.0 * k as f64 + f64::from(shift - 12) * 300.0,
                        unit: "ns/call",
                        extra: Default::default(),
                        lower_is_better: true,
                    };
                    s.extra.insert("size", size as f64);
                    samples.push((cfg, s.clone()));
                    // Left out: 2 threads, and far above the others so that they would set the y range.
                    s.workload = format!("{op} {} t2", size_label(size));
                    s.value = 1e6;
                    samples.push((cfg, s.clone()));
                    s.workload = format!("{op} sg16x{} t1", size_label(size));
                    samples.push((cfg, s));
                }
            }
        }
        aggregate(&samples)
    }

    #[test]
    fn draws_title_axes_legend_and_one_line_per_configuration() {
        register_font().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/plot-test");
        fs::create_dir_all(&dir).unwrap();
        let files = plot(&records(), &dir).unwrap();
        assert_eq!(files, FILES.map(|f| dir.join(f)));
        let svg = fs::read_to_string(&files[0]).unwrap();
        // plotters-svg puts each text on a line of its own.
        for text in [
            "Per-call cost against buffer size (median over the rounds)",
            "map, 1 thread",
            "unmap, 1 thread",
            "buffer size (bytes, log₂ scale)",
            "mean time per call (µs)",
            "4K",
            "2M",
        ] {
            assert!(
                svg.contains(&format!("\n{text}\n")),
                "{text} missing from the SVG"
            );
        }
        let drawn: Vec<Config> = Config::ALL.into_iter().filter(|c| c.runs_micro()).collect();
        assert_eq!(drawn.len(), 5);
        for cfg in &drawn {
            // The legend names each configuration once per panel.
            assert_eq!(
                svg.matches(&format!("\n{}\n", cfg.name())).count(),
                2,
                "{cfg:?}"
            );
            // In each panel, one line through the 10 sizes (width 2) and one legend stroke (width 3).
            let [r, g, b] = cfg.color();
            let stroke = format!("stroke=\"#{r:02X}{g:02X}{b:02X}\" stroke-width=");
            let lines: Vec<&str> = svg
                .lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(&format!("{stroke}\"2\"")))
                .collect();
            assert_eq!(lines.len(), 2, "{cfg:?}");
            for l in lines {
                let points = l
                    .split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                assert_eq!(points.split_whitespace().count(), 10, "{l}");
            }
            assert_eq!(svg.matches(&format!("{stroke}\"3\"")).count(), 2, "{cfg:?}");
        }
        assert!(!svg.contains("\nwarden-identity\n"));
        // y stays near the t1 values (at most 2000 + 5 × 500 + 9 × 300 ns, + 10 %): the 2-thread and sg16
        // records at 1000 µs are left out.
        assert!(
            svg.contains("\n8.0\n") && !svg.contains("\n10.0\n"),
            "{svg}"
        );
        let png = fs::read(&files[1]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dim = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        assert_eq!((dim(16), dim(20)), SIZE);
    }

    #[test]
    fn draws_text_and_lines_into_the_bitmap() {
        register_font().unwrap();
        let (w, h) = SIZE;
        let mut buf = vec![0u8; (w * h * 3) as usize];
        draw(
            &BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area(),
            &records(),
        )
        .unwrap();
        let px = |x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            [buf[i], buf[i + 1], buf[i + 2]]
        };
        // The title is text: dark pixels in the top band, which holds nothing else.
        let dark = (0..30)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y).iter().all(|&c| c < 100))
            .count();
        assert!(dark > 200, "{dark} dark pixels in the title band");
        // Each configuration's colour is drawn (lines, markers, legend).
        for cfg in Config::ALL.into_iter().filter(|c| c.runs_micro()) {
            let n = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .filter(|&(x, y)| px(x, y) == cfg.color())
                .count();
            assert!(n > 100, "{cfg:?}: {n} pixels");
        }
    }

    #[test]
    fn draws_empty_panels_without_records() {
        register_font().unwrap();
        let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        draw(
            &BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area(),
            &[],
        )
        .unwrap();
        assert!(buf.contains(&255) && buf.iter().any(|&c| c < 100));
    }
}
