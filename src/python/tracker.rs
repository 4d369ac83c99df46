//! ferroshm's side of the standard library's resource tracker
//! (`multiprocessing.resource_tracker`), in Rust so that creating and
//! attaching a segment pays for no Python code.
//!
//! Every process tree shares one tracker process, which unlinks the segments
//! still registered with it once every process holding its pipe has exited.
//! ferroshm speaks the running standard library's protocol exactly: the
//! `CMD:name:shared_memory` lines of every version and, where the running
//! tracker reads them (3.14+), the JSON lines (`{"cmd", "rtype",
//! "base64_name"}`) its writer sends for names the line format cannot carry
//! (a newline; on 3.15, where `_use_simple_format` is off, every name). What
//! the running standard library cannot register is refused before anything
//! is created ([`check_trackable`]).
//!
//! Messages go straight down the tracker's pipe (one `write`, none at all
//! for a REGISTER of an object this process registered already) whenever the
//! standard library's `register`/`unregister` are its own and the tracker is
//! running; otherwise the standard library's functions do it (and relaunch a
//! dead tracker). A message is at most 512 bytes, so a pipe takes it whole.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::{PyAttributeError, PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

#[cfg(unix)]
use crate::segment::write_to_fd;
#[cfg(windows)]
fn write_to_fd(_fd: i32, _msg: &[u8]) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// The resource type of shared-memory segments in the tracker's protocol.
const RTYPE: &str = "shared_memory";

/// What the standard library's writer refuses to send (its own limit: a
/// pipe write of at most `PIPE_BUF`, which POSIX makes at least 512).
const MAX_MESSAGE: usize = 512;

/// The longest name (UTF-8 bytes) a JSON message carries (3.14+).
const MAX_JSON_NAME: usize = 255;

/// The standard library's tracker module, looked up once.
struct Stdlib {
    /// `multiprocessing.resource_tracker.__dict__`.
    module_dict: Py<PyDict>,
    /// `ResourceTracker.register` and `.unregister`: while the module's
    /// `register`/`unregister` are these methods of its own tracker, nobody
    /// (a test, a user) expects every message to go through them, and the
    /// pipe may be written to directly.
    class_register: Py<PyAny>,
    class_unregister: Py<PyAny>,
    /// The module's `register`/`unregister` objects once seen to be its
    /// own (the usual case: compared by identity, no lookups).
    own_register: PyOnceLock<Py<PyAny>>,
    own_unregister: PyOnceLock<Py<PyAny>>,
    /// Whether the running tracker reads JSON lines and splits lines so
    /// that names with ':' work (3.14+; `_decode_message`).
    reads_json: bool,
}

static STDLIB: PyOnceLock<Option<Stdlib>> = PyOnceLock::new();

/// The tracker module, or None where there is none (Windows).
fn stdlib(py: Python<'_>) -> PyResult<Option<&Stdlib>> {
    STDLIB
        .get_or_try_init(py, || {
            if cfg!(windows) {
                return Ok(None);
            }
            let module = py.import("multiprocessing.resource_tracker")?;
            let class = module.getattr("ResourceTracker")?;
            Ok(Some(Stdlib {
                module_dict: module.dict().unbind(),
                class_register: class.getattr("register")?.unbind(),
                class_unregister: class.getattr("unregister")?.unbind(),
                own_register: PyOnceLock::new(),
                own_unregister: PyOnceLock::new(),
                reads_json: module.hasattr("_decode_message")?,
            }))
        })
        .map(Option::as_ref)
}

/// Registrations this process made, by OS name, with the (device, inode)
/// of the object registered when known. The tracker keeps a set, so a
/// second REGISTER of a name it holds changes nothing: attaching again to
/// the same object skips the message (a pipe write that wakes the tracker,
/// the bulk of an attach's cost). A segment re-created under the same name
/// has another inode and is registered again. Inherited across `fork`,
/// like the tracker itself.
struct Registry {
    registered: Names,
    /// Registrations made with a tracker this process can no longer reach:
    /// a child of a raw `os.fork()` on Python 3.14+ closes the inherited
    /// pipe (gh-146313). They stay the parent's tracker's business: attaching
    /// to such an object again registers nothing (the child's own tracker
    /// would unlink the parent's segment when the child exits), and
    /// unlinking it sends nothing (the child's tracker never had it).
    inherited: Names,
}

/// Names to identities, hashed with [`NameHasher`].
type Names = HashMap<String, Option<(u64, u64)>, BuildHasherDefault<NameHasher>>;

/// A fast hash for segment names (FxHash's multiply-rotate): the keys are
/// this process's own names, so the flooding resistance of the standard
/// hasher, ten times slower here, buys nothing.
#[derive(Default)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Whether [`Registry::inherited`] may hold names (set after a raw fork
/// that dropped the tracker's pipe), so that the usual UNREGISTER need not
/// look.
static HAS_INHERITED: AtomicBool = AtomicBool::new(false);

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let registry = guard.get_or_insert_with(|| Registry {
        registered: Names::default(),
        inherited: Names::default(),
    });
    f(registry)
}

/// Whether this process has `name` registered for the object `identity`
/// (by itself), or, after a raw fork, its parent had `name` registered.
/// An inherited name counts whatever the object: the parent registered it
/// as it created it, often before anyone knew the object's identity, and
/// the parent's tracker removes the name when the parent's tree is gone,
/// whichever object holds it then; the child's own tracker must never get
/// it (it would unlink the parent's segment when the child exits).
pub(crate) fn is_registered(name: &str, identity: (u64, u64)) -> bool {
    with_registry(|r| {
        r.registered.get(name) == Some(&Some(identity)) || r.inherited.contains_key(name)
    })
}

/// Whether this process has registered `name`, whatever the object.
pub(crate) fn has_name(name: &str) -> bool {
    with_registry(|r| r.registered.contains_key(name))
}

impl Registry {
    fn note(&mut self, cmd: Cmd, name: &str, identity: Option<(u64, u64)>) {
        match cmd {
            Cmd::Register => {
                self.registered.insert(name.to_owned(), identity);
            }
            Cmd::Unregister => {
                self.registered.remove(name);
            }
        }
    }
}

/// Write `msg` to the tracker's pipe `fd` and note what it says in the
/// registry, under the registry's lock: the registry's order is the pipe's,
/// so two threads sending REGISTER and UNREGISTER of one name never leave it
/// saying "registered" after an UNREGISTER reached the tracker last.
fn write_noted(
    fd: i32,
    msg: &[u8],
    cmd: Cmd,
    names: &[&str],
    identity: Option<(u64, u64)>,
) -> bool {
    with_registry(|r| {
        let sent = write_to_fd(fd, msg).is_ok();
        if sent {
            for name in names {
                r.note(cmd, name, identity);
            }
        }
        sent
    })
}

/// A tracker command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    Register,
    Unregister,
}

impl Cmd {
    fn as_str(self) -> &'static str {
        match self {
            Cmd::Register => "REGISTER",
            Cmd::Unregister => "UNREGISTER",
        }
    }

    fn parse(cmd: &str) -> PyResult<Cmd> {
        match cmd {
            "REGISTER" => Ok(Cmd::Register),
            "UNREGISTER" => Ok(Cmd::Unregister),
            other => Err(PyValueError::new_err(format!(
                "unknown resource tracker command {other:?}: expected 'REGISTER' or 'UNREGISTER'"
            ))),
        }
    }
}

/// How the running standard library's writer sends a name: the line format
/// ("simple") or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `CMD:name:rtype`, ASCII; the reader splits it so that ':' works.
    Simple,
    /// `CMD:name:rtype`, ASCII, split at every ':' (before 3.14).
    SimpleOnly,
    /// `{"cmd":…,"rtype":…,"base64_name":…}` (3.14+).
    Json,
}

/// The format the running standard library would send `name` in (3.14+:
/// its tracker's `_use_simple_format`, which tests and 3.15 turn off).
fn format_for(py: Python<'_>, stdlib: &Stdlib, name: &str) -> PyResult<Format> {
    if !stdlib.reads_json {
        return Ok(Format::SimpleOnly);
    }
    let simple = match tracker_object(py, stdlib)? {
        Some(tracker) => match tracker.getattr(pyo3::intern!(py, "_use_simple_format")) {
            Ok(flag) => flag.is_truthy()?,
            Err(e) if e.is_instance_of::<PyAttributeError>(py) => true,
            Err(e) => return Err(e),
        },
        None => true,
    };
    Ok(if simple && !name.contains('\n') {
        Format::Simple
    } else {
        Format::Json
    })
}

/// Why the running tracker cannot carry `name` in `format`, if it cannot.
fn refusal(name: &str, format: Format) -> Option<&'static str> {
    let bytes = name.as_bytes();
    match format {
        // One pass: ASCII, no ':' and no newline.
        Format::SimpleOnly if bytes.iter().any(|&b| b >= 0x80 || b == b':' || b == b'\n') => {
            Some("this Python's resource tracker carries only ASCII names without ':' or newlines")
        }
        Format::Simple if !name.is_ascii() => Some(
            "this Python's resource tracker carries only ASCII names (non-ASCII names from Python 3.15)",
        ),
        // Only for names the OS would take (at most 255 bytes after the
        // slash): a longer one is the OS's EINVAL, as for the standard
        // library, whose tracker never sees it.
        Format::Json
            if bytes.len() > MAX_JSON_NAME
                && name.trim_start_matches('/').len() <= MAX_JSON_NAME =>
        {
            Some("the resource tracker carries names of at most 255 UTF-8 bytes")
        }
        _ => None,
    }
}

/// The message the standard library would write for `cmd` and `name`
/// (which the caller checked with [`refusal`]).
fn message(cmd: Cmd, name: &str, format: Format) -> PyResult<Vec<u8>> {
    let cmd = cmd.as_str().as_bytes();
    let msg = match format {
        Format::Simple | Format::SimpleOnly => {
            let mut msg = Vec::with_capacity(cmd.len() + name.len() + RTYPE.len() + 3);
            for part in [cmd, b":", name.as_bytes(), b":", RTYPE.as_bytes(), b"\n"] {
                msg.extend_from_slice(part);
            }
            if msg.len() > MAX_MESSAGE {
                return Err(PyValueError::new_err("msg too long"));
            }
            msg
        }
        // json.dumps(payload, ensure_ascii=True, separators=(",", ":")):
        // the values are ASCII without quotes or backslashes, so they are
        // written as they are.
        Format::Json => {
            let b64 = urlsafe_b64(name.as_bytes());
            let mut msg = Vec::with_capacity(64 + b64.len());
            for part in [
                b"{\"cmd\":\"".as_slice(),
                cmd,
                b"\",\"rtype\":\"",
                RTYPE.as_bytes(),
                b"\",\"base64_name\":\"",
                b64.as_bytes(),
                b"\"}\n",
            ] {
                msg.extend_from_slice(part);
            }
            msg
        }
    };
    Ok(msg)
}

/// [`message`], refusing what the running tracker cannot carry.
fn checked_message(cmd: Cmd, name: &str, format: Format) -> PyResult<Vec<u8>> {
    if let Some(why) = refusal(name, format) {
        return Err(PyValueError::new_err(format!(
            "shared memory name {name:?} cannot be tracked: {why}"
        )));
    }
    message(cmd, name, format)
}

/// `base64.urlsafe_b64encode`: the URL-safe alphabet, with padding.
fn urlsafe_b64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `resource_tracker._resource_tracker`, if it has the shape this module
/// knows.
fn tracker_object<'py>(py: Python<'py>, stdlib: &Stdlib) -> PyResult<Option<Bound<'py, PyAny>>> {
    stdlib
        .module_dict
        .bind(py)
        .get_item(pyo3::intern!(py, "_resource_tracker"))
}

/// The running tracker's pipe, when messages may be written to it
/// directly: the module's `register`/`unregister` are its own, and the
/// tracker is running (with `start`, started first). The number is valid
/// for as long as the caller holds the GIL without running Python code.
fn direct_fd(py: Python<'_>, stdlib: &Stdlib, start: bool) -> PyResult<Option<i32>> {
    let dict = stdlib.module_dict.bind(py);
    let Some(tracker) = tracker_object(py, stdlib)? else {
        return Ok(None);
    };
    let is_own = |key: &Bound<'_, PyString>,
                  seen: &PyOnceLock<Py<PyAny>>,
                  method: &Py<PyAny>|
     -> PyResult<bool> {
        let Some(f) = dict.get_item(key)? else {
            return Ok(false);
        };
        if seen.get(py).is_some_and(|own| f.is(own)) {
            return Ok(true);
        }
        // A bound method of the module's own tracker (`_resource_tracker.
        // register`), not a replacement: remember it.
        let own = f
            .getattr(pyo3::intern!(py, "__func__"))
            .is_ok_and(|func| func.is(method))
            && f.getattr(pyo3::intern!(py, "__self__"))
                .is_ok_and(|owner| owner.is(&tracker));
        if own {
            let _ = seen.set(py, f.unbind());
        }
        Ok(own)
    };
    if !is_own(
        pyo3::intern!(py, "register"),
        &stdlib.own_register,
        &stdlib.class_register,
    )? || !is_own(
        pyo3::intern!(py, "unregister"),
        &stdlib.own_unregister,
        &stdlib.class_unregister,
    )? {
        return Ok(None);
    }
    let fd_attr = pyo3::intern!(py, "_fd");
    let mut fd = tracker.getattr(fd_attr)?;
    if fd.is_none() && start {
        // Best effort: a tracker that cannot start is the standard
        // library's to report, when the caller falls back to it. A
        // KeyboardInterrupt (a signal handled in its Python code) is not
        // a failure to start: it goes to the caller.
        if let Err(e) = tracker.call_method0(pyo3::intern!(py, "ensure_running")) {
            if !e.is_instance_of::<PyException>(py) {
                return Err(e);
            }
            return Ok(None);
        }
        fd = tracker.getattr(fd_attr)?;
    }
    if fd.is_none() {
        return Ok(None);
    }
    Ok(fd.extract::<i32>().ok())
}

/// Raise ValueError, naming the problem, if the running standard library
/// cannot register `name` (its OS name, leading '/' included): it would be
/// registered wrongly or not at all, and the segment would leak
/// (gh-98896, gh-103043). Called before anything is created.
pub(crate) fn check_trackable(py: Python<'_>, name: &str) -> PyResult<()> {
    if let Some(stdlib) = stdlib(py)? {
        let format = format_for(py, stdlib, name)?;
        if let Some(why) = refusal(name, format) {
            let repr = PyString::new(py, name).repr()?;
            return Err(PyValueError::new_err(format!(
                "shared memory name {repr} cannot be tracked: {why} (use such names with track=False)"
            )));
        }
    }
    Ok(())
}

/// What `create` needs to register a new segment the moment it exists:
/// the tracker's pipe and the REGISTER message (the UNREGISTER that takes
/// it back is made only if it is needed: [`Announcement::unregister`]).
pub(crate) struct Announcement {
    pub(crate) fd: i32,
    pub(crate) register: Vec<u8>,
    format: Format,
}

impl Announcement {
    /// The message that takes the registration of `name` back.
    pub(crate) fn unregister(&self, name: &str) -> Vec<u8> {
        // Cannot fail: `name` passed the same checks for the REGISTER.
        message(Cmd::Unregister, name, self.format).unwrap_or_default()
    }
}

/// The tracker's pipe and the message that registers `name` (which the
/// caller checked with [`check_trackable`]), when the pipe can be written to
/// directly (the tracker started if need be); None
/// when it cannot: register the usual way afterwards ([`send`]).
pub(crate) fn announcement(py: Python<'_>, name: &str) -> PyResult<Option<Announcement>> {
    let Some(stdlib) = stdlib(py)? else {
        return Ok(None);
    };
    let Some(fd) = direct_fd(py, stdlib, true)? else {
        return Ok(None);
    };
    let format = format_for(py, stdlib, name)?;
    Ok(Some(Announcement {
        fd,
        // The caller checked `name` with `check_trackable` already.
        register: message(Cmd::Register, name, format)?,
        format,
    }))
}

/// Record that the announcement's REGISTER of `name` was written (for the
/// object `identity`, when known).
pub(crate) fn announced(name: &str, identity: Option<(u64, u64)>) {
    with_registry(|r| r.note(Cmd::Register, name, identity));
}

/// Send `cmd` for segment `name` (its OS name, with the leading '/') to
/// the standard library's resource tracker, the one the whole process tree
/// shares: straight down its pipe when possible (none at all for a
/// REGISTER of an object this process has registered already, see
/// [`is_registered`]), else through the standard library's own function,
/// which starts or relaunches the tracker if need be.
pub(crate) fn send(
    py: Python<'_>,
    cmd: Cmd,
    name: &str,
    identity: Option<(u64, u64)>,
) -> PyResult<()> {
    let Some(stdlib) = stdlib(py)? else {
        return Ok(());
    };
    match (cmd, identity) {
        (Cmd::Register, Some(id)) if is_registered(name, id) => return Ok(()),
        (Cmd::Unregister, _) if HAS_INHERITED.load(Ordering::Relaxed) => {
            let inherited = with_registry(|r| r.inherited.remove(name).is_some());
            if inherited {
                return Ok(());
            }
        }
        _ => {}
    }
    let format = format_for(py, stdlib, name)?;
    let msg = checked_message(cmd, name, format)?;
    if let Some(fd) = direct_fd(py, stdlib, false)? {
        if write_noted(fd, &msg, cmd, &[name], identity) {
            return Ok(());
        }
        // The tracker is gone: let the standard library relaunch it.
    }
    with_registry(|r| r.registered.remove(name));
    let function = match cmd {
        Cmd::Register => pyo3::intern!(py, "register"),
        Cmd::Unregister => pyo3::intern!(py, "unregister"),
    };
    let function = stdlib
        .module_dict
        .bind(py)
        .get_item(function)?
        .ok_or_else(|| {
            PyValueError::new_err("multiprocessing.resource_tracker has no such function")
        })?;
    function.call1((name, RTYPE))?;
    Ok(())
}

/// [`send`] for several names (no identities): in one write to the
/// tracker's pipe when it can be written to directly and the batch fits
/// `PIPE_BUF`, which wakes the tracker once instead of once a name.
pub(crate) fn send_all(py: Python<'_>, cmd: Cmd, names: &[String]) -> PyResult<()> {
    let Some(stdlib) = stdlib(py)? else {
        return Ok(());
    };
    let mut batch = Vec::new();
    for name in names {
        batch.extend(checked_message(cmd, name, format_for(py, stdlib, name)?)?);
    }
    if batch.len() <= pipe_buf() {
        if let Some(fd) = direct_fd(py, stdlib, false)? {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            if write_noted(fd, &batch, cmd, &names, None) {
                return Ok(());
            }
        }
    }
    for name in names {
        send(py, cmd, name, None)?;
    }
    Ok(())
}

/// The largest write a pipe takes whole.
fn pipe_buf() -> usize {
    #[cfg(unix)]
    {
        libc::PIPE_BUF
    }
    #[cfg(not(unix))]
    {
        MAX_MESSAGE
    }
}

/// `resource_tracker.register`'s replacement for ferroshm's segments, as
/// Python sees it: `tracker_send("REGISTER", "/name", identity=None)`.
#[pyfunction]
#[pyo3(signature = (cmd, name, identity=None))]
fn tracker_send(
    py: Python<'_>,
    cmd: &str,
    name: &str,
    identity: Option<(u64, u64)>,
) -> PyResult<()> {
    send(py, Cmd::parse(cmd)?, name, identity)
}

/// Several names in one message batch (see `tracker_send`).
#[pyfunction]
fn tracker_send_all(py: Python<'_>, cmd: &str, names: Vec<String>) -> PyResult<()> {
    send_all(py, Cmd::parse(cmd)?, &names)
}

/// Raise ValueError if the running standard library's resource tracker
/// cannot carry `name` (OS name, leading '/' included).
#[pyfunction]
#[pyo3(name = "check_trackable")]
fn py_check_trackable(py: Python<'_>, name: &str) -> PyResult<()> {
    check_trackable(py, name)
}

/// The names this process has registered with the tracker (and those it
/// inherited from a parent whose tracker it cannot reach), for tests and
/// diagnostics: `(registered, inherited)`.
#[pyfunction]
fn tracker_registrations() -> (Vec<String>, Vec<String>) {
    with_registry(|r| {
        let mut registered: Vec<String> = r.registered.keys().cloned().collect();
        let mut inherited: Vec<String> = r.inherited.keys().cloned().collect();
        registered.sort();
        inherited.sort();
        (registered, inherited)
    })
}

/// Called in the child after `os.fork()`, after the standard library's own
/// hook: if that hook closed the inherited tracker pipe (a raw fork on
/// Python 3.14+, gh-146313), this process's registrations belong to a
/// tracker it can no longer reach (see [`Registry::inherited`]).
#[pyfunction]
fn tracker_after_fork_in_child(py: Python<'_>) -> PyResult<()> {
    let Some(stdlib) = stdlib(py)? else {
        return Ok(());
    };
    let dropped = match tracker_object(py, stdlib)? {
        Some(tracker) => tracker.getattr(pyo3::intern!(py, "_fd"))?.is_none(),
        None => false,
    };
    if dropped {
        with_registry(|r| {
            let registered = std::mem::take(&mut r.registered);
            r.inherited.extend(registered);
            HAS_INHERITED.store(!r.inherited.is_empty(), Ordering::Relaxed);
        });
    }
    Ok(())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tracker_send, m)?)?;
    m.add_function(wrap_pyfunction!(tracker_send_all, m)?)?;
    m.add_function(wrap_pyfunction!(py_check_trackable, m)?)?;
    m.add_function(wrap_pyfunction!(tracker_registrations, m)?)?;
    m.add_function(wrap_pyfunction!(tracker_after_fork_in_child, m)?)?;
    Ok(())
}
