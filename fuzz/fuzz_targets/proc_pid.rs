//! What kports reads about one process: `/proc/PID/cmdline` (whole, and cut at the size
//! limit), `/proc/PID/cgroup` (container and pod), an `fd` link (`socket:[N]`), and what it
//! shows of them (name, component, redacted command line).
#![no_main]

use kports_core::{ProcessInfo, cgroup, component, names, redact};
use kports_linux::procfs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = procfs::socket_inode(data);
    let argv = procfs::split_cmdline(data);
    let cut = procfs::cut_cmdline(data, true);
    assert_eq!(cut.last().map(String::as_str), Some(procfs::CMDLINE_CUT));
    let text = String::from_utf8_lossy(data);
    let (container, pod) = cgroup::container_of(&text);
    let _ = (container, pod);
    let info = ProcessInfo {
        pid: 1,
        comm: text.chars().take(15).collect(),
        exe: argv.first().cloned(),
        argv,
        cgroup: text.into_owned(),
    };
    let _ = names::process_name(&info);
    let _ = component::recognise(&info);
    let _ = redact::redact(&info.argv);
});
