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

use crate::errors::{type_error, type_name, value_error};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// An answer to send back where its request came from (see `answer_many`).
pub(crate) struct Reply<'py> {
    pub datagram: Bound<'py, PyBytes>,
    pub source: libc::sockaddr_storage,
    pub source_len: libc::socklen_t,
    pub address: Bound<'py, PyAny>,
}

#[pyclass(frozen, module = "dhtquery._core", name = "DatagramSocket")]
pub struct DatagramSocket {
    fd: i32,
    family: i32,
    queued: Py<PyAny>,
    fallback: Py<PyAny>,
    closed: AtomicBool,
    sent: AtomicU64,
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

    /// `datagram` to `address`: sent here if it can be, else through the
    /// fallback.
    pub(crate) fn send_to(
        &self,
        datagram: &Bound<'_, PyBytes>,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = datagram.py();
        if self.open(py)? {
            if let Some((to, to_len)) = socket_address(address, self.family) {
                if self.send_raw(datagram.as_bytes(), &to, to_len) {
                    return Ok(());
                }
            }
        }
        self.fallback.bind(py).call1((datagram, address))?;
        Ok(())
    }

    /// Each of `replies` back to where its request came from (`source`, as
    /// the kernel gave it: no address read back from Python), in one
    /// `sendmmsg` system call; what the kernel does not take, or all of
    /// them while the fast path is shut, through the fallback, in order.
    pub(crate) fn answer_many(&self, py: Python<'_>, replies: &[Reply<'_>]) -> PyResult<()> {
        let mut sent = 0;
        if !replies.is_empty() && self.open(py)? {
            let mut iovecs: Vec<libc::iovec> = replies
                .iter()
                .map(|reply| {
                    let data = reply.datagram.as_bytes();
                    libc::iovec {
                        iov_base: data.as_ptr().cast_mut().cast(),
                        iov_len: data.len(),
                    }
                })
                .collect();
            let mut headers: Vec<libc::mmsghdr> = replies
                .iter()
                .zip(iovecs.iter_mut())
                .map(|(reply, iovec)| {
                    // SAFETY: all-zero is a valid mmsghdr
                    let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    header.msg_hdr.msg_name = std::ptr::from_ref(&reply.source).cast_mut().cast();
                    header.msg_hdr.msg_namelen = reply.source_len;
                    header.msg_hdr.msg_iov = std::ptr::from_mut(iovec);
                    header.msg_hdr.msg_iovlen = 1;
                    header
                })
                .collect();
            let count = u32::try_from(headers.len()).unwrap_or(u32::MAX);
            // SAFETY: the headers point into `iovecs`, `replies`' bytes and
            // sources, all alive until the call returns; the kernel only
            // reads them (and writes each header's msg_len)
            let done = unsafe {
                libc::sendmmsg(
                    self.fd,
                    headers.as_mut_ptr(),
                    count,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if done > 0 {
                #[allow(clippy::cast_sign_loss, reason = "done > 0 here")]
                let done = done as usize;
                sent = done;
                self.sent.fetch_add(done as u64, Ordering::Relaxed);
            }
        }
        for reply in &replies[sent..] {
            self.fallback
                .bind(py)
                .call1((&reply.datagram, &reply.address))?;
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
    fn new(
        sock: &Bound<'_, PyAny>,
        queued: &Bound<'_, PyAny>,
        fallback: &Bound<'_, PyAny>,
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
        Ok(DatagramSocket {
            fd,
            family,
            queued: queued.clone().unbind(),
            fallback: fallback.clone().unbind(),
            closed: AtomicBool::new(false),
            sent: AtomicU64::new(0),
        })
    }

    /// Send `datagram` (bytes) to `address`: at once with one `sendto` if
    /// the fast path is open, else (or if the kernel refuses it) through
    /// `fallback`.
    fn send(&self, datagram: &Bound<'_, PyAny>, address: &Bound<'_, PyAny>) -> PyResult<()> {
        let Ok(datagram) = datagram.cast_exact::<PyBytes>() else {
            return Err(type_error(format!(
                "datagram must be bytes, got {}",
                type_name(datagram)
            )));
        };
        self.send_to(datagram, address)
    }

    /// From now on every datagram goes to `fallback` (the transport closed:
    /// its socket is about to be).
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
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
