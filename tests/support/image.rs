//! The image's userland rootfs (`deploy/image/rootfs.sh`), built at most once per content and shared by
//! every test binary: cached under the target dir, keyed by the script and `packages.lock`, and built
//! under a file lock so concurrent test runs wait for one build instead of racing.

use std::{
    fs::{self, File},
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    process::Command,
};

use super::{bin, harness::require_tools};

/// The repository's image directory (the script and its lock).
fn image_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/image")
}

/// The rootfs the Containerfile copies (iptables, nft and their libraries, no k8sdoctor binary), built
/// now if this script and lock have not been built yet. Read-only for callers: copy it before changing it.
/// Not run (or failed under K8SDOCTOR_PRIVILEGED_TESTS=1) without apt-get, dpkg-deb and readelf.
pub fn rootfs() -> PathBuf {
    require_tools(&["apt-get", "apt-cache", "dpkg-deb", "readelf"]);
    let mut h = DefaultHasher::new();
    for f in ["rootfs.sh", "packages.lock"] {
        fs::read(image_dir().join(f))
            .expect("deploy/image")
            .hash(&mut h);
    }
    // bin() is TARGET/<profile>/k8sdoctor: the cache sits beside the profiles.
    let cache = bin()
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("image-rootfs");
    fs::create_dir_all(&cache).unwrap();
    let key = format!("{:016x}", h.finish());
    let done = cache.join(&key);
    let lock = File::create(cache.join(format!("{key}.lock"))).unwrap();
    lock.lock().expect("lock the rootfs cache");
    if !done.is_dir() {
        let build = cache.join(format!("{key}.build"));
        let _ = fs::remove_dir_all(&build);
        let o = Command::new(image_dir().join("rootfs.sh"))
            .arg(&build)
            .output()
            .expect("run deploy/image/rootfs.sh");
        assert!(
            o.status.success(),
            "deploy/image/rootfs.sh: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        // Only a whole build is ever seen under the key.
        fs::rename(&build, &done).unwrap();
    }
    drop(lock);
    done
}

/// A copy of the rootfs with the static k8sdoctor at /usr/local/bin (as the Containerfile lays it out) and
/// empty /proc, /host and /dev/null to mount on (a container runtime provides them), in a fresh temporary
/// directory.
pub fn rootfs_with_binary() -> tempfile::TempDir {
    let src = rootfs();
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cp: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    fs::create_dir_all(dir.path().join("usr/local/bin")).unwrap();
    fs::copy(bin(), dir.path().join("usr/local/bin/k8sdoctor")).unwrap();
    for d in ["proc", "host", "dev"] {
        fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    fs::write(dir.path().join("dev/null"), "").unwrap();
    dir
}
