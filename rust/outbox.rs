//! `DatagramSocket`: the core's way out to a node's own UDP socket (the one
//! `transport.BatchedTransport` owns), so that a datagram the core makes (an
//! answer served from a kept answer or the replay cache, a lookup's asks)
//! leaves in the call that made it: one `sendto` system call, no Python call
//! per datagram (the transport's `sendto` was a Python frame over the
//! socket's, which parses the address tuple again).
//!
//! It sends only while the transport would have sent at once: not after
//! `close()` (the transport's), and not while datagrams wait in the
//! transport's queue for room in the kernel's buffer (`queued`, a sized
//! container the transport owns). Then, or when the kernel refuses the
//! datagram (`EAGAIN`, or any error), or when the address is not an IP
//! literal of the socket's family, the datagram goes to `fallback` (the
//! transport's `sendto`), which queues it, counts it or reports the error
//! exactly as before: the fast path only skips work, it decides nothing.
//!
//! Made with `call_soon` (the event loop's), it defers: a datagram waits in
//! the socket's own list, the first of a batch schedules `flush`, which
//! sends them all in one `sendmmsg`. A wake-up that starts lookups or
//! answers others sends its asks together at the end of it, rather than
//! one `sendto` each: the kernel delivers a loopback batch in one pass and
//! wakes each receiver once (measured: see `flush_waiting`). Anything that
//! leaves through `fallback`, or `close()`, sends what waits first, so the
//! datagrams given to `send` leave in the order they were given (the
//! answers `answer_many` sends at the end of a batch do not wait). A
//! request's RTT now includes the rest of the turn it was opened in.

use crate::errors::{type_error, type_name, value_error};
use parking_lot::Mutex;
use pyo3::exceptions::PyException;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// An answer to send back where its request came from (see `answer_many`).
pub(crate) struct Reply<'py> {
    pub datagram: Bound<'py, PyBytes>,
    pub source: libc::sockaddr_storage,
    pub source_len: libc::socklen_t,
    pub address: Bound<'py, PyAny>,
}

/// A datagram deferred to the next `flush`.
struct Waiting {
    datagram: Py<PyBytes>,
    to: libc::sockaddr_storage,
    to_len: libc::socklen_t,
    address: Py<PyAny>,
}

/// Datagrams one `sendmmsg` takes at most (the kernel's `UIO_MAXIOV`).
const MAX_BATCH: usize = 1024;

#[pyclass(frozen, module = "dhtquery._core", name = "DatagramSocket")]
pub struct DatagramSocket {
    fd: i32,
    family: i32,
    queued: Py<PyAny>,
    fallback: Py<PyAny>,
    closed: AtomicBool,
    sent: AtomicU64,
    /// the loop's `call_soon`: sends deferred to `flush` (None: at once)
    call_soon: Option<Py<PyAny>>,
    /// deferred datagrams, in order (the lock is never held over a Python
    /// call: a fallback may send again)
    waiting: Mutex<Vec<Waiting>>,
    /// a flush is scheduled for what waits (set by the send that scheduled
    /// it, cleared when a flush takes the list or scheduling failed: a
    /// failure leaves the next send to schedule one)
    scheduled: AtomicBool,
}

/// `address` (`(host, port)`, or `(host, port, flowinfo, scope_id)` for
/// IPv6) as a socket address of `family`, if its host is an IP literal of
/// that family.
fn socket_address(
    address: &Bound<'_, PyAny>,
    family: i32,
) -> Option<(libc::sockaddr_storage, libc::socklen_t)> {
    let parts = address.cast_exact::<PyTuple>().ok()?;
    if parts.len() < 2 {
        return None;
    }
    let host = parts.get_borrowed_item(0).ok()?;
    let host = host.cast_exact::<PyString>().ok()?;
    let host = host.to_str().ok()?;
    let port = parts.get_borrowed_item(1).ok()?;
    let port: u16 = port.cast_exact::<PyInt>().ok()?.extract().ok()?;
    // SAFETY: all-zero is a valid sockaddr_storage
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let size = match family {
        libc::AF_INET => {
            let ip: Ipv4Addr = host.parse().ok()?;
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr, this one a sockaddr_in
            let sin = unsafe { &mut *std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::sa_family_t::try_from(libc::AF_INET).ok()?;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from(ip).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        libc::AF_INET6 => {
            let ip: Ipv6Addr = host.parse().ok()?;
            let (flowinfo, scope_id) = if parts.len() >= 4 {
                (
                    parts.get_borrowed_item(2).ok()?.extract::<u32>().ok()?,
                    parts.get_borrowed_item(3).ok()?.extract::<u32>().ok()?,
                )
            } else {
                (0, 0)
            };
            // SAFETY: as above, a sockaddr_in6
            let sin6 =
                unsafe { &mut *std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::sa_family_t::try_from(libc::AF_INET6).ok()?;
            sin6.sin6_port = port.to_be();
            sin6.sin6_flowinfo = flowinfo.to_be();
            sin6.sin6_addr.s6_addr = ip.octets();
            sin6.sin6_scope_id = scope_id;
            std::mem::size_of::<libc::sockaddr_in6>()
        }
        _ => return None,
    };
    Some((storage, libc::socklen_t::try_from(size).ok()?))
}

impl DatagramSocket {
    /// Whether the fast path may send now (see the module's docs).
    fn open(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(!self.closed.load(Ordering::Relaxed) && self.queued.bind(py).len()? == 0)
    }

    /// One `sendto` of `data` to `to`; false if the kernel did not take it.
    fn send_raw(&self, data: &[u8], to: &libc::sockaddr_storage, to_len: libc::socklen_t) -> bool {
        // SAFETY: `data` and `to` are valid for the call; the fd is the
        // socket's until the transport closes it, after `close()` here
        let sent = unsafe {
            libc::sendto(
                self.fd,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                std::ptr::from_ref(to).cast(),
                to_len,
            )
        };
        if sent >= 0 {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        sent >= 0
    }

    /// `datagram` to `address`: sent here (or deferred to `flush`) if it
    /// can be, else through the fallback, after what waits.
    pub(crate) fn send_to(
        slf: &Bound<'_, Self>,
        datagram: &Bound<'_, PyBytes>,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.open(py)? {
            if let Some((to, to_len)) = socket_address(address, this.family) {
                if let Some(call_soon) = &this.call_soon {
                    this.waiting.lock().push(Waiting {
                        datagram: datagram.clone().unbind(),
                        to,
                        to_len,
                        address: address.clone().unbind(),
                    });
                    if !this.scheduled.swap(true, Ordering::Relaxed) {
                        let flush = slf.getattr(intern!(py, "flush"))?;
                        if let Err(error) = call_soon.bind(py).call1((flush,)) {
                            this.scheduled.store(false, Ordering::Relaxed);
                            if !error.is_instance_of::<PyException>(py) {
                                return Err(error);
                            }
                            // (no loop to come back: sent now instead)
                            this.flush_waiting(py)?;
                        }
                    }
                    return Ok(());
                }
                if this.send_raw(datagram.as_bytes(), &to, to_len) {
                    return Ok(());
                }
            }
        }
        // What waits goes first; this datagram goes to the fallback even if
        // one of those failed there (the first error is returned after).
        let flushed = this.flush_waiting(py);
        if let Err(error) = &flushed {
            if !error.is_instance_of::<PyException>(py) {
                return flushed;
            }
        }
        let given = this.fallback.bind(py).call1((datagram, address));
        flushed?;
        given?;
        Ok(())
    }

    /// One `sendmmsg` per `MAX_BATCH` of `messages` (bytes, address,
    /// address length), until the kernel takes fewer than it was given:
    /// how many, from the first, it took.
    fn send_many(&self, messages: &[(&[u8], &libc::sockaddr_storage, libc::socklen_t)]) -> usize {
        let mut sent = 0;
        while sent < messages.len() {
            let chunk = &messages[sent..messages.len().min(sent + MAX_BATCH)];
            let mut iovecs: Vec<libc::iovec> = chunk
                .iter()
                .map(|(data, _, _)| libc::iovec {
                    iov_base: data.as_ptr().cast_mut().cast(),
                    iov_len: data.len(),
                })
                .collect();
            let mut headers: Vec<libc::mmsghdr> = chunk
                .iter()
                .zip(iovecs.iter_mut())
                .map(|((_, to, to_len), iovec)| {
                    // SAFETY: all-zero is a valid mmsghdr
                    let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    header.msg_hdr.msg_name = std::ptr::from_ref(*to).cast_mut().cast();
                    header.msg_hdr.msg_namelen = *to_len;
                    header.msg_hdr.msg_iov = std::ptr::from_mut(iovec);
                    header.msg_hdr.msg_iovlen = 1;
                    header
                })
                .collect();
            let count = u32::try_from(headers.len()).unwrap_or(u32::MAX);
            // SAFETY: the headers point into `iovecs`, the messages' bytes
            // and addresses, all alive until the call returns; the kernel
            // only reads them (and writes each header's msg_len)
            let done = unsafe {
                libc::sendmmsg(
                    self.fd,
                    headers.as_mut_ptr(),
                    count,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if done <= 0 {
                break;
            }
            #[allow(clippy::cast_sign_loss, reason = "done > 0 here")]
            let done = done as usize;
            sent += done;
            self.sent.fetch_add(done as u64, Ordering::Relaxed);
            if done < chunk.len() {
                break;
            }
        }
        sent
    }

    /// What waits, sent (one `sendmmsg` while the fast path is open), the
    /// rest through the fallback in order; the first error a fallback
    /// raised, once each has been given its datagram.
    /// (Measured: `ci/ab.py`, `bench dht --quick`, 4 pairs, this against
    /// sending at once, the machine shared with a helper's build: the
    /// `get_all` client's CPU a lookup 127.9 -> 114.1 us (pair ratio 0.856)
    /// single, 153.8 -> 114.0 (0.727) five records a key; the nodes'
    /// process 0.722 and 0.622; lookups/s 1.165 and 1.373. Each datagram
    /// still costs its loopback delivery, in one pass for the batch, and a
    /// peer's process is woken once for it rather than per `sendto`.)
    fn flush_waiting(&self, py: Python<'_>) -> PyResult<()> {
        let waiting = std::mem::take(&mut *self.waiting.lock());
        self.scheduled.store(false, Ordering::Relaxed);
        if waiting.is_empty() {
            return Ok(());
        }
        let sent = if self.open(py)? {
            let messages: Vec<_> = waiting
                .iter()
                .map(|item| (item.datagram.bind(py).as_bytes(), &item.to, item.to_len))
                .collect();
            self.send_many(&messages)
        } else {
            0
        };
        self.through_fallback(
            py,
            waiting[sent..]
                .iter()
                .map(|item| (&item.datagram, &item.address)),
        )
    }

    /// `datagrams` to the fallback, each, in order; the first error raised.
    fn through_fallback<'a>(
        &self,
        py: Python<'_>,
        datagrams: impl Iterator<Item = (&'a Py<PyBytes>, &'a Py<PyAny>)>,
    ) -> PyResult<()> {
        let fallback = self.fallback.bind(py);
        let mut first_error = None;
        for (datagram, address) in datagrams {
            if let Err(error) = fallback.call1((datagram.bind(py), address.bind(py))) {
                // (an interrupt stops here, as in the twin)
                if !error.is_instance_of::<PyException>(py) {
                    return Err(error);
                }
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Each of `replies` back to where its request came from (`source`, as
    /// the kernel gave it: no address read back from Python), in one
    /// `sendmmsg` system call; what the kernel does not take, or all of
    /// them while the fast path is shut, through the fallback, in order.
    pub(crate) fn answer_many(&self, py: Python<'_>, replies: &[Reply<'_>]) -> PyResult<()> {
        let mut sent = 0;
        if !replies.is_empty() && self.open(py)? {
            let messages: Vec<_> = replies
                .iter()
                .map(|reply| (reply.datagram.as_bytes(), &reply.source, reply.source_len))
                .collect();
            sent = self.send_many(&messages);
        }
        let fallback = self.fallback.bind(py);
        for reply in &replies[sent..] {
            fallback.call1((&reply.datagram, &reply.address))?;
        }
        Ok(())
    }

    pub(crate) fn fd(&self) -> i32 {
        self.fd
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

#[pymethods]
impl DatagramSocket {
    /// Sends to `sock` (a bound, non-blocking UDP socket of family
    /// `AF_INET` or `AF_INET6`) while `queued` (the transport's queue: any sized
    /// container) is empty; `fallback(datagram, address)` otherwise.
    #[new]
    #[pyo3(signature = (sock, queued, fallback, call_soon=None))]
    fn new(
        sock: &Bound<'_, PyAny>,
        queued: &Bound<'_, PyAny>,
        fallback: &Bound<'_, PyAny>,
        call_soon: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let not_socket = || type_error(format!("sock must be a socket, got {}", type_name(sock)));
        let fd: i32 = sock
            .call_method0("fileno")
            .map_err(|_| not_socket())?
            .extract()
            .map_err(|_| not_socket())?;
        if fd < 0 {
            return Err(value_error("sock is closed".to_owned()));
        }
        let family: i32 = sock
            .getattr("family")
            .map_err(|_| not_socket())?
            .extract()
            .map_err(|_| not_socket())?;
        if family != libc::AF_INET && family != libc::AF_INET6 {
            return Err(value_error(format!(
                "sock must be of family AF_INET or AF_INET6, got {family}"
            )));
        }
        if queued.len().is_err() {
            return Err(type_error(format!(
                "queued must be a sized container, got {}",
                type_name(queued)
            )));
        }
        if !fallback.is_callable() {
            return Err(type_error(format!(
                "fallback must be callable, got {}",
                type_name(fallback)
            )));
        }
        let call_soon = match call_soon {
            Some(call_soon) if !call_soon.is_none() => {
                if !call_soon.is_callable() {
                    return Err(type_error(format!(
                        "call_soon must be callable or None, got {}",
                        type_name(call_soon)
                    )));
                }
                Some(call_soon.clone().unbind())
            }
            _ => None,
        };
        Ok(DatagramSocket {
            fd,
            family,
            queued: queued.clone().unbind(),
            fallback: fallback.clone().unbind(),
            closed: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            call_soon,
            waiting: Mutex::new(Vec::new()),
            scheduled: AtomicBool::new(false),
        })
    }

    /// Send `datagram` (bytes) to `address`: at once with one `sendto` (or
    /// deferred to `flush`, if made with `call_soon`) while the fast path
    /// is open, else (or if the kernel refuses it) through `fallback`.
    fn send(
        slf: &Bound<'_, Self>,
        datagram: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let Ok(datagram) = datagram.cast_exact::<PyBytes>() else {
            return Err(type_error(format!(
                "datagram must be bytes, got {}",
                type_name(datagram)
            )));
        };
        Self::send_to(slf, datagram, address)
    }

    /// What it holds, for the cyclic GC: the transport's `sendto` (its
    /// fallback) holds the transport, which holds this socket.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.queued)?;
        visit.call(&self.fallback)?;
        if let Some(call_soon) = &self.call_soon {
            visit.call(call_soon)?;
        }
        // (never held over a Python call, so free here; if not, what waits
        // is left unvisited rather than the collector blocked)
        if let Some(waiting) = self.waiting.try_lock() {
            for item in waiting.iter() {
                visit.call(&item.datagram)?;
                visit.call(&item.address)?;
            }
        }
        Ok(())
    }

    /// Send what waits (see `flush_waiting`).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.flush_waiting(py)
    }

    /// What waits is sent, then from now on every datagram goes to
    /// `fallback` (the transport closed: its socket is about to be).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let flushed = self.flush_waiting(py);
        self.closed.store(true, Ordering::Relaxed);
        flushed
    }

    /// Datagrams deferred, not sent yet.
    #[getter]
    fn waiting(&self) -> usize {
        self.waiting.lock().len()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.is_closed()
    }

    #[getter]
    fn fileno(&self) -> i32 {
        self.fd
    }

    /// Datagrams sent by the fast path (not through `fallback`).
    #[getter]
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}
