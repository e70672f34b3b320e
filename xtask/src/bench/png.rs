//! A minimal RGB PNG writer and a text-free line plot, enough for the bench report's per-call cost figure.

use std::io::Write;

use anyhow::Result;
use flate2::Compression;
use flate2::write::ZlibEncoder;

/// An RGB image, row-major.
pub struct Canvas {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    px: Vec<[u8; 3]>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![[255; 3]; w * h],
        }
    }

    /// Sets one pixel; outside the canvas is ignored.
    pub fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }

    /// A filled rectangle.
    pub fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    /// A line `thick` pixels wide (Bresenham with a square brush).
    pub fn line(
        &mut self,
        (mut x0, mut y0): (i64, i64),
        (x1, y1): (i64, i64),
        thick: i64,
        c: [u8; 3],
    ) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.rect(
                x0 - thick / 2,
                y0 - thick / 2,
                x0 + thick / 2,
                y0 + thick / 2,
                c,
            );
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// The image as a PNG file (8-bit RGB, no interlace).
    pub fn png(&self) -> Result<Vec<u8>> {
        let mut raw = Vec::with_capacity(self.h * (1 + 3 * self.w));
        for row in self.px.chunks(self.w) {
            raw.push(0); // filter: none
            for p in row {
                raw.extend_from_slice(p);
            }
        }
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&raw)?;
        let idat = z.finish()?;
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(self.w as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.h as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &idat);
        chunk(&mut out, b"IEND", &[]);
        Ok(out)
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO-HDLC, as PNG uses it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// One series of a plot: its colour and (x, y) points.
pub struct Series {
    /// Line colour.
    pub color: [u8; 3],
    /// Points, in data units.
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` into the panel `(x0, y0, x1, y1)` of `c`: log2 x axis, linear y axis from 0, a grey grid line
/// at each power of two in x and at each `y_step` in y, a marker at every point.
pub fn panel(
    c: &mut Canvas,
    (x0, y0, x1, y1): (i64, i64, i64, i64),
    series: &[Series],
    y_step: f64,
) {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut xmin, mut xmax, mut ymax) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        xmin = xmin.min(x.log2());
        xmax = xmax.max(x.log2());
        ymax = ymax.max(y);
    }
    if xmin > xmax || ymax <= 0.0 {
        return;
    }
    let ymax = (ymax / y_step).ceil() * y_step;
    let xspan = (xmax - xmin).max(1.0);
    let map = |x: f64, y: f64| -> (i64, i64) {
        let px = x0 as f64 + (x.log2() - xmin) / xspan * (x1 - x0) as f64;
        let py = y1 as f64 - y / ymax * (y1 - y0) as f64;
        (px.round() as i64, py.round() as i64)
    };
    let grey = [220, 220, 220];
    let mut gy = 0.0;
    while gy <= ymax {
        let (_, py) = map(2f64.powf(xmin), gy);
        c.line((x0, py), (x1, py), 1, grey);
        gy += y_step;
    }
    let mut gx = xmin.floor();
    while gx <= xmax {
        let (px, _) = map(2f64.powf(gx), 0.0);
        c.line((px, y0), (px, y1), 1, grey);
        gx += 1.0;
    }
    c.line((x0, y1), (x1, y1), 2, [0; 3]);
    c.line((x0, y0), (x0, y1), 2, [0; 3]);
    for s in series {
        let mut prev = None;
        for &(x, y) in &s.points {
            let p = map(x, y);
            if let Some(q) = prev {
                c.line(q, p, 3, s.color);
            }
            c.rect(p.0 - 4, p.1 - 4, p.0 + 4, p.1 + 4, s.color);
            prev = Some(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_input() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }

    #[test]
    fn png_round_trips_through_a_decoder() {
        let mut c = Canvas::new(5, 3);
        c.set(1, 1, [1, 2, 3]);
        c.set(99, 99, [9; 3]); // outside: ignored
        let png = c.png().unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]));
        // IDAT decompresses to 3 rows of filter byte + 5 RGB pixels, with the pixel we set.
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        use std::io::Read;
        flate2::read::ZlibDecoder::new(&png[41..41 + idat_len])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 3 * 16);
        assert_eq!(&raw[16 + 1 + 3..16 + 1 + 6], &[1, 2, 3]);
    }
}
