//! Read, write and create NumPy arrays shared by Python's `ferroshm.share`,
//! `empty`, `zeros` and `attach` (the header layout of `ferroshm::array`).
//!
//! ```text
//! cargo run --release --example array_tool -- NAME                    # the array as JSON
//! cargo run --release --example array_tool -- NAME set INDEX VALUE    # a[flat INDEX] = VALUE
//! cargo run --release --example array_tool -- create NAME D1,D2,...   # float64 0, 1, 2, ...
//! ```
//!
//! NAME is the array's name as Python gives it (`a.name`). Printing opens
//! the segment read-only and prints one JSON object: `name`, `descr` (the
//! dtype description as stored), `shape`, `order` (`"C"` or `"F"`),
//! `itemsize`, `nbytes`, `data_offset` and, for arrays of float64, float32,
//! int64, int32 or uint8 in the machine's byte order, `values` (every
//! element in memory order) and `sum`. `set` writes one element of a float64
//! or int64 array, by its flat index in memory order. `create` makes a
//! C-ordered float64 array whose elements count up from 0, and prints its
//! name; the caller unlinks it (`ferroshm.attach(name).unlink()`).
//!
//! Exit status: 0 on success; 1, with a one-line message on stderr, when
//! the name does not exist or holds no valid array, or the index or value
//! is wrong; 2 for a usage error.

use std::fmt::{Display, Write as _};
use std::process::ExitCode;

use ferroshm::array::{ArrayError, ArrayRef, Element, Order, SharedArray};

const USAGE: &str =
    "usage: array_tool NAME | array_tool NAME set INDEX VALUE | array_tool create NAME D1,D2,...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [name] if !name.starts_with('-') => print_array(name),
        [name, cmd, index, value] if cmd == "set" => set_element(name, index, value),
        [cmd, name, shape] if cmd == "create" => create(name, shape),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("array_tool: {message}");
            ExitCode::from(1)
        }
    }
}

/// `s` as a JSON string.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn failed(e: ArrayError) -> String {
    e.to_string()
}

/// `"values": [...], "sum": S` of a typed view.
fn values_json<T: Element + Display + Into<f64>>(view: &ArrayRef<'_, T>) -> String {
    let values = view.to_vec();
    let sum: f64 = values.iter().map(|&v| v.into()).sum();
    let list: Vec<String> = values.iter().map(ToString::to_string).collect();
    format!(", \"values\": [{}], \"sum\": {sum}", list.join(", "))
}

fn print_array(name: &str) -> Result<(), String> {
    let array = SharedArray::open_read_only(name).map_err(failed)?;
    let h = array.header();
    let shape: Vec<String> = h.shape().iter().map(ToString::to_string).collect();
    let order = if h.order() == Order::Fortran {
        "F"
    } else {
        "C"
    };
    let mut out = format!(
        "{{\"name\": {}, \"descr\": {}",
        json_str(array.name()),
        json_str(h.descr_text())
    );
    let _ = write!(
        out,
        ", \"shape\": [{}], \"order\": \"{order}\"",
        shape.join(", ")
    );
    let _ = write!(
        out,
        ", \"itemsize\": {}, \"nbytes\": {}",
        h.itemsize(),
        h.nbytes()
    );
    let _ = write!(out, ", \"data_offset\": {}", h.data_offset());
    // i64 sums as f64: exact for the small values of examples and tests.
    if let Ok(v) = array.typed::<f64>() {
        out.push_str(&values_json(&v));
    } else if let Ok(v) = array.typed::<f32>() {
        out.push_str(&values_json(&v));
    } else if let Ok(v) = array.typed::<i32>() {
        out.push_str(&values_json(&v));
    } else if let Ok(v) = array.typed::<u8>() {
        out.push_str(&values_json(&v));
    } else if let Ok(v) = array.typed::<i64>() {
        let values = v.to_vec();
        let list: Vec<String> = values.iter().map(ToString::to_string).collect();
        let sum: i64 = values.iter().sum();
        let _ = write!(out, ", \"values\": [{}], \"sum\": {sum}", list.join(", "));
    }
    out.push('}');
    println!("{out}");
    Ok(())
}

fn set_element(name: &str, index: &str, value: &str) -> Result<(), String> {
    let array = SharedArray::open(name).map_err(failed)?;
    let index: usize = index
        .parse()
        .map_err(|_| format!("index {index:?} is not a non-negative integer"))?;
    let bad_value = |kind: &str| format!("value {value:?} is not a {kind}");
    if let Ok(v) = array.typed::<f64>() {
        let x: f64 = value.parse().map_err(|_| bad_value("float"))?;
        v.set(index, x).map_err(failed)
    } else if let Ok(v) = array.typed::<i64>() {
        let x: i64 = value.parse().map_err(|_| bad_value("64-bit integer"))?;
        v.set(index, x).map_err(failed)
    } else {
        Err(format!(
            "set writes float64 and int64 arrays; this one's items are {}",
            array.header().descr_text()
        ))
    }
}

fn create(name: &str, shape: &str) -> Result<(), String> {
    let dims = shape
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("shape {shape:?} is not a list of dimensions like 3,4"))?;
    let array = SharedArray::create_of::<f64>(name, &dims).map_err(failed)?;
    let view = array.typed::<f64>().map_err(failed)?;
    let values: Vec<f64> = (0..view.len()).map(|i| i as f64).collect();
    view.copy_from(&values).map_err(failed)?;
    println!("{}", array.name());
    Ok(())
}
