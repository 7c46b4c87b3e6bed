//! `BatchReceiver`: many datagrams from a non-blocking UDP socket in one
//! system call (`recvmmsg`), for a caller that owns its socket (registered
//! with the event loop through `add_reader`) instead of getting one
//! `datagram_received` call per datagram from the loop's transport.
//!
//! Why it exists: issue 14 asks whether batching the receive side pays
//! (measured by the DHT bench's echo rows: the same echo through
//! `datagram_received`, and through `add_reader` with this receiver). A
//! node's `BatchedTransport` reads with it, and its protocol hands the
//! batch to `DatagramEngine.receive_batch` (see there).

use crate::errors::{check_int, type_error, type_name, value_error};
use foldhash::fast::RandomState;
use hashbrown::HashMap;
use parking_lot::Mutex;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Datagrams one call takes at most, and the bytes of one at most (the
/// largest UDP payload over IPv4 is 65,507).
const MAX_COUNT: u32 = 1024;
const MAX_SIZE: u32 = 65_536;
/// Sources whose Python address is kept (then the cache starts again: a
/// bound on its memory, ~200 bytes an address, whatever the peers).
const ADDRESSES_KEPT: usize = 1024;

/// A datagram's source as the kernel gave it, the fields its Python
/// address is made of (IPv6: with `pairs`, which leaves two of them out).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4 {
        ip: u32,
        port: u16,
    },
    V6 {
        ip: [u8; 16],
        port: u16,
        flowinfo: u32,
        scope_id: u32,
        pairs: bool,
    },
}

struct Buffers {
    data: Vec<u8>,
    addresses: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// The Python address of each source seen lately: a peer's datagrams
    /// share one tuple (and its host `str`, whose hash Python then keeps:
    /// the dicts keyed by address hash it once), rather than a new one
    /// formatted and hashed per datagram. Measured: see `cached_address`.
    known: HashMap<Source, Py<PyTuple>, RandomState>,
}

// (the raw pointers in iovecs/headers point into `data` and `addresses`,
// which the struct owns and never reallocates; used under the mutex only)
unsafe impl Send for Buffers {}

#[pyclass(frozen, module = "dhtquery._core", name = "BatchReceiver")]
pub struct BatchReceiver {
    count: usize,
    size: usize,
    buffers: Mutex<Buffers>,
}

/// The source the kernel wrote in `storage`, if of a family we read.
fn source(storage: &libc::sockaddr_storage, pairs: bool) -> PyResult<Source> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET)
            let sin = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            Ok(Source::V4 {
                ip: u32::from_be(sin.sin_addr.s_addr),
                port: u16::from_be(sin.sin_port),
            })
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6)
            let sin6 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            // (left out of a pair: equal sources for the cache)
            let (flowinfo, scope_id) = if pairs {
                (0, 0)
            } else {
                (u32::from_be(sin6.sin6_flowinfo), sin6.sin6_scope_id)
            };
            Ok(Source::V6 {
                ip: sin6.sin6_addr.s6_addr,
                port: u16::from_be(sin6.sin6_port),
                flowinfo,
                scope_id,
                pairs,
            })
        }
        family => Err(value_error(format!("unexpected address family {family}"))),
    }
}

/// `(host, port)` for IPv4, `(host, port, flowinfo, scope_id)` for IPv6
/// (`(host, port)` if made with `pairs`), as `socket.recvfrom` gives them
/// (an IPv6 host in Rust's notation: no `%scope` suffix, and `::a.b.c.d`
/// as hex groups).
fn address(py: Python<'_>, source: Source) -> PyResult<Bound<'_, PyTuple>> {
    match source {
        Source::V4 { ip, port } => (Ipv4Addr::from(ip).to_string(), port).into_pyobject(py),
        Source::V6 {
            ip,
            port,
            pairs: true,
            ..
        } => (Ipv6Addr::from(ip).to_string(), port).into_pyobject(py),
        Source::V6 {
            ip,
            port,
            flowinfo,
            scope_id,
            pairs: false,
        } => (Ipv6Addr::from(ip).to_string(), port, flowinfo, scope_id).into_pyobject(py),
    }
}

/// The Python address of `source`, the one made before if it is kept.
/// (cachegrind, `bench profile --sockets --count-only --frozen-clock`,
/// slope between 1,000 and 3,000 lookups: 232.0 k -> 223.6 k instructions
/// a `get_all`, three answers: the host formatted, a str, an int and a tuple
/// made and freed, and the str hashed by each dict it is looked up in, per
/// datagram)
fn cached_address<'py>(
    py: Python<'py>,
    known: &mut HashMap<Source, Py<PyTuple>, RandomState>,
    source: Source,
) -> PyResult<Bound<'py, PyTuple>> {
    if let Some(address) = known.get(&source) {
        return Ok(address.bind(py).clone());
    }
    let made = address(py, source)?;
    if known.len() >= ADDRESSES_KEPT {
        known.clear();
    }
    known.insert(source, made.clone().unbind());
    Ok(made)
}

#[pymethods]
impl BatchReceiver {
    #[new]
    fn new(count: &Bound<'_, PyAny>, size: &Bound<'_, PyAny>) -> PyResult<Self> {
        let count = check_int("count", count, 1, MAX_COUNT)? as usize;
        let size = check_int("size", size, 1, MAX_SIZE)? as usize;
        let mut buffers = Buffers {
            data: vec![0u8; count * size],
            // SAFETY: all-zero is a valid sockaddr_storage, iovec, mmsghdr
            addresses: vec![unsafe { std::mem::zeroed() }; count],
            iovecs: vec![unsafe { std::mem::zeroed() }; count],
            headers: vec![unsafe { std::mem::zeroed() }; count],
            known: HashMap::with_hasher(RandomState::default()),
        };
        let base = buffers.data.as_mut_ptr();
        for index in 0..count {
            // SAFETY: index * size < count * size, within `data`
            buffers.iovecs[index].iov_base = unsafe { base.add(index * size) }.cast();
            buffers.iovecs[index].iov_len = size;
        }
        Ok(BatchReceiver {
            count,
            size,
            buffers: Mutex::new(buffers),
        })
    }

    #[getter]
    fn count(&self) -> usize {
        self.count
    }

    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    /// The datagrams waiting in `sock` (non-blocking), at most `count`, as
    /// `[(data, address), ...]`; [] if none waits. A datagram longer than
    /// `size` comes cut to `size` bytes (as `recvfrom(size)` cuts it).
    fn receive<'py>(
        &self,
        py: Python<'py>,
        sock: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let fd: i32 = sock
            .call_method0("fileno")?
            .extract()
            .map_err(|_| type_error(format!("sock must be a socket, got {}", type_name(sock))))?;
        let list = PyList::empty(py);
        for datagram in self.read(py, fd, false)? {
            list.append((datagram.data, datagram.address))?;
        }
        Ok(list)
    }
}

/// A datagram `BatchReceiver::read` took: its bytes, its source as Python
/// has it, and as the kernel gave it (to answer it without reading the
/// tuple back: `DatagramEngine.receive_batch`).
pub(crate) struct Received<'py> {
    pub data: Bound<'py, PyBytes>,
    pub address: Bound<'py, PyTuple>,
    pub source: libc::sockaddr_storage,
    pub source_len: libc::socklen_t,
}

impl BatchReceiver {
    /// From now on, `address` (equal to the one made for `source`: the
    /// caller has compared them) is the Python address of `source`'s
    /// datagrams: the engine's answers hand it the address their request
    /// was sent to, so that the next answer from that peer is compared with
    /// its request's address, and looked up in the peer book, as the same
    /// object rather than an equal one read item by item (`same_address`).
    /// Skipped while a read holds the buffers.
    pub(crate) fn adopt(
        &self,
        source: &libc::sockaddr_storage,
        pairs: bool,
        address: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let Some(mut buffers) = self.buffers.try_lock() else {
            return Ok(());
        };
        let source = self::source(source, pairs)?;
        if let Some(kept) = buffers.known.get_mut(&source) {
            *kept = address.clone().unbind();
        }
        Ok(())
    }

    /// The datagrams waiting in `fd` (non-blocking), at most `count`, copied
    /// out of the buffers (so that handling them may call Python, which may
    /// read again). An IPv6 source is `(host, port)` if `pairs`, else as
    /// `socket.recvfrom` gives it.
    pub(crate) fn read<'py>(
        &self,
        py: Python<'py>,
        fd: i32,
        pairs: bool,
    ) -> PyResult<Vec<Received<'py>>> {
        if fd < 0 {
            return Err(value_error("sock is closed".to_owned()));
        }
        // (Python objects are made under the lock: a `__del__` that called
        // back into this receiver would find it taken, and is refused)
        let mut guard = self
            .buffers
            .try_lock()
            .ok_or_else(|| value_error("receive is running already".to_owned()))?;
        let buffers = &mut *guard;
        let name_size =
            u32::try_from(std::mem::size_of::<libc::sockaddr_storage>()).unwrap_or(u32::MAX);
        for index in 0..self.count {
            let header = &mut buffers.headers[index].msg_hdr;
            header.msg_name = std::ptr::from_mut(&mut buffers.addresses[index]).cast();
            header.msg_namelen = name_size;
            header.msg_iov = std::ptr::from_mut(&mut buffers.iovecs[index]);
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
        }
        let count = u32::try_from(self.count).unwrap_or(u32::MAX);
        // SAFETY: headers, their iovecs and names point into buffers that
        // live (locked) until the call returns
        let received = unsafe {
            libc::recvmmsg(
                fd,
                buffers.headers.as_mut_ptr(),
                count,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(Vec::new());
            }
            return Err(PyOSError::new_err((
                error.raw_os_error().unwrap_or(0),
                error.to_string(),
            )));
        }
        #[allow(
            clippy::cast_sign_loss,
            reason = "received >= 0 here, and at most count"
        )]
        let received = received as usize;
        let mut out = Vec::with_capacity(received);
        for index in 0..received {
            let length = (buffers.headers[index].msg_len as usize).min(self.size);
            let start = index * self.size;
            let source = buffers.addresses[index];
            let address = cached_address(py, &mut buffers.known, self::source(&source, pairs)?)?;
            out.push(Received {
                data: PyBytes::new(py, &buffers.data[start..start + length]),
                address,
                source,
                source_len: buffers.headers[index].msg_hdr.msg_namelen,
            });
        }
        Ok(out)
    }
}
