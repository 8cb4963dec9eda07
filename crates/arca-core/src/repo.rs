//! The repository: opening and creating it, keys, sealed objects, snapshots, the index and
//! reading blobs.
//!
//! Object names: `config`, `keys/ID`, `data/XX/ID` (XX = first two hex digits),
//! `index/ID`, `snapshots/ID`, `locks/ID`. Sealed objects (index, snapshot, lock) use their
//! kind as associated data, so one kind cannot be passed off as another; the ids of packs,
//! index files and snapshots are the BLAKE3 hash of their stored bytes.

use std::sync::Arc;

use arca_storage::{ErrorKind as StorageKind, ObjectInfo, Storage};
use serde::{Serialize, de::DeserializeOwned};

use crate::chunker::Chunker;
use crate::crypto::{self, Crypto, MasterKey};
use crate::error::{Error, Result};
use crate::format::{
    BINARY_VERSION, BlobEntry, ChunkerParams, Config, FORMAT_VERSION, IndexFile, IndexPack,
    KdfParams, KeyFile, KeyKind, Snapshot, Tree,
};
use crate::id::Id;
use crate::index::{Index, decode_index, encode_index};
use crate::pack::{self, HEADER_PROBE};

/// Packs per index file written by [`Repository::save_index_files`] at most.
pub const INDEX_FILE_PACKS: usize = 4096;
/// Blobs per index file written by [`Repository::save_index_files`]: a file is closed once
/// it holds this many (about 2 MB encoded).
pub const INDEX_FILE_BLOBS: usize = 50_000;

/// Options for `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression_level: i32,
    pub pack_size: u32,
    /// Argon2id parameters for the first key; `None` for the defaults.
    pub kdf: Option<KdfParams>,
    /// Share another repository's chunker parameters, chunker secret and blob-id secret
    /// (for `copy`: blob ids are then equal in both, and copies send only what is new).
    pub shared_from: Option<SharedSecrets>,
    /// Record in the config that clients must never delete (`Config::append_only`).
    pub append_only: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_size: 8 << 20,
            kdf: None,
            shared_from: None,
            append_only: false,
        }
    }
}

/// Snapshots that could be read (oldest first), and errors for those that could not.
pub type SnapshotList = (Vec<(Id, Snapshot)>, Vec<Error>);

/// The secrets two repositories share to deduplicate the same way.
#[derive(Debug, Clone)]
pub struct SharedSecrets {
    pub chunker: ChunkerParams,
    pub chunker_key: [u8; 32],
    pub id_key: [u8; 32],
}

/// An open repository with its master key.
pub struct Repository {
    storage: Arc<dyn Storage>,
    location: String,
    config: Config,
    crypto: Crypto,
    key_id: Id,
    chunker: Chunker,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location)
            .finish()
    }
}

/// The name of a pack object.
pub fn pack_name(id: &Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

/// This machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The current user's name.
pub fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string())
}

/// Fails with `RepositoryNotFound` or `NotARepository` unless `storage` holds a config
/// (cheap: one stat; callers use it before asking for a password).
pub fn ensure_repository(storage: &dyn Storage, location: &str) -> Result<()> {
    match storage.stat("config") {
        Err(e) if e.is_not_found() => Err(missing_repo(storage, location)),
        _ => Ok(()),
    }
}

fn missing_repo(storage: &dyn Storage, location: &str) -> Error {
    match storage.list("") {
        Err(e) if e.kind == StorageKind::NotFound => Error::RepositoryNotFound(location.into()),
        // The config may be there for someone allowed to look: say what stopped us.
        Err(e) if e.kind == StorageKind::PermissionDenied => Error::Storage(e),
        _ => Error::NotARepository(location.into()),
    }
}

fn read_config(storage: &dyn Storage, location: &str) -> Result<Config> {
    let raw = match storage.read("config") {
        Ok(r) => r,
        Err(e) if e.kind == StorageKind::NotFound => return Err(missing_repo(storage, location)),
        Err(e) => return Err(e.into()),
    };
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: u32,
    }
    let v: Versioned = serde_json::from_slice(&raw)
        .map_err(|e| Error::corrupt("config", format!("not a valid config: {e}")))?;
    if v.version > FORMAT_VERSION {
        return Err(Error::NewerFormat {
            location: location.into(),
            found: v.version,
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_slice(&raw).map_err(|e| Error::corrupt("config", e))
}

impl Repository {
    /// Creates a repository in an empty location.
    pub fn init(
        storage: Arc<dyn Storage>,
        password: &[u8],
        opts: InitOptions,
    ) -> Result<Repository> {
        let location = storage.properties().location;
        match storage.list("") {
            Ok(list) if !list.is_empty() => {
                return Err(Error::Invalid(format!(
                    "{location} is not empty: {}",
                    if list.iter().any(|o| o.name == "config") {
                        "a repository already exists there"
                    } else {
                        "refusing to create a repository in a directory with other files"
                    }
                )));
            }
            _ => {}
        }
        storage.create()?;
        let mut master = MasterKey::generate();
        let mut chunker = opts.chunker;
        if let Some(sh) = opts.shared_from {
            master = master
                .with_chunker_key(sh.chunker_key)
                .with_id_key(sh.id_key);
            chunker = sh.chunker;
        }
        let config = Config {
            version: FORMAT_VERSION,
            id: Id::random(),
            created: jiff::Timestamp::now(),
            chunker,
            compression_level: opts.compression_level,
            pack_size: opts.pack_size,
            append_only: opts.append_only,
        };
        let kdf = opts.kdf.unwrap_or_else(crypto::default_kdf_params);
        let (key_id, key_bytes) = make_key_file(&config, &master, password, kdf)?;
        storage.write(&format!("keys/{key_id}"), &key_bytes)?;
        let cfg = serde_json::to_vec_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))?;
        // The config is written last: a repository without it is not a repository yet.
        storage.write("config", &cfg)?;
        Ok(Repository::from_parts(
            storage, location, config, master, key_id,
        ))
    }

    fn from_parts(
        storage: Arc<dyn Storage>,
        location: String,
        config: Config,
        master: MasterKey,
        key_id: Id,
    ) -> Repository {
        let chunker = Chunker::new(config.chunker, master.chunker_key());
        Repository {
            storage,
            location,
            config,
            crypto: Crypto::new(master),
            key_id,
            chunker,
        }
    }

    /// Opens a repository, trying every key file with the password.
    pub fn open(storage: Arc<dyn Storage>, password: &[u8]) -> Result<Repository> {
        let location = storage.properties().location;
        let config = read_config(storage.as_ref(), &location)?;
        let keys = storage.list("keys/")?;
        if keys.is_empty() {
            return Err(Error::corrupt("keys/", "the repository has no key files"));
        }
        let mut last_err = None;
        for k in &keys {
            let raw = storage.read(&k.name)?;
            let kf: KeyFile = match serde_json::from_slice(&raw) {
                Ok(kf) => kf,
                Err(e) => {
                    last_err = Some(Error::corrupt(&k.name, e));
                    continue;
                }
            };
            if kf.kind != KeyKind::Password || kf.repository != config.id {
                continue;
            }
            match unwrap_key(&kf, password) {
                Ok(master) => {
                    let key_id = k
                        .name
                        .trim_start_matches("keys/")
                        .parse()
                        .map_err(|e| Error::corrupt(&k.name, e))?;
                    return Ok(Repository::from_parts(
                        storage, location, config, master, key_id,
                    ));
                }
                // Name the key file that is damaged (unwrap_key cannot know it).
                Err(Error::Corrupt { reason, .. }) => {
                    last_err = Some(Error::corrupt(&k.name, reason))
                }
                Err(_) => {}
            }
        }
        match last_err {
            Some(e) if keys.len() == 1 => Err(e),
            _ => Err(Error::WrongPassword(location)),
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
    pub fn location(&self) -> &str {
        &self.location
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }
    /// The chunker and id secrets, to create a repository that deduplicates like this one.
    pub fn shared_secrets(&self) -> SharedSecrets {
        let m = self.crypto.master_key();
        SharedSecrets {
            chunker: self.config.chunker,
            chunker_key: *m.chunker_key(),
            id_key: *m.id_key(),
        }
    }

    /// The key file this session opened the repository with.
    pub fn key_id(&self) -> Id {
        self.key_id
    }

    // ------------------------------------------------------------------ keys

    pub fn list_keys(&self) -> Result<Vec<(Id, KeyFile)>> {
        let mut out = Vec::new();
        for k in self.storage.list("keys/")? {
            let raw = self.storage.read(&k.name)?;
            let kf: KeyFile =
                serde_json::from_slice(&raw).map_err(|e| Error::corrupt(&k.name, e))?;
            let id = k
                .name
                .trim_start_matches("keys/")
                .parse()
                .map_err(|e| Error::corrupt(&k.name, e))?;
            out.push((id, kf));
        }
        Ok(out)
    }

    /// Adds a key file for another password.
    pub fn add_key(&self, password: &[u8], kdf: Option<KdfParams>) -> Result<Id> {
        let kdf = kdf.unwrap_or_else(crypto::default_kdf_params);
        let (id, bytes) = make_key_file(&self.config, self.crypto.master_key(), password, kdf)?;
        self.storage.write(&format!("keys/{id}"), &bytes)?;
        Ok(id)
    }

    /// Removes a key file; refuses to remove the last one and the one in use.
    pub fn remove_key(&self, id: &Id) -> Result<()> {
        let keys = self.storage.list("keys/")?;
        let name = format!("keys/{id}");
        if !keys.iter().any(|k| k.name == name) {
            return Err(Error::Invalid(format!("no key {id}")));
        }
        if keys.len() <= 1 {
            return Err(Error::Invalid(
                "refusing to remove the last key: the repository would become unreadable".into(),
            ));
        }
        if *id == self.key_id {
            return Err(Error::Invalid(
                "refusing to remove the key in use; open the repository with another password first"
                    .into(),
            ));
        }
        self.storage.delete(&name)?;
        Ok(())
    }

    /// Replaces the current key by one for `password`; returns the new key id.
    pub fn change_password(&mut self, password: &[u8], kdf: Option<KdfParams>) -> Result<Id> {
        let new = self.add_key(password, kdf)?;
        self.storage.delete(&format!("keys/{}", self.key_id))?;
        self.key_id = new;
        Ok(new)
    }

    // ------------------------------------------------------------------ sealed objects

    /// Seals and stores an object under `dir/ID` where ID is the hash of the stored bytes.
    pub fn save_sealed(&self, dir: &str, plaintext: &[u8]) -> Result<Id> {
        let sealed = self.crypto.seal(plaintext, dir.as_bytes());
        let id = Id::of_object(&sealed);
        self.storage.write(&format!("{dir}/{id}"), &sealed)?;
        Ok(id)
    }

    /// Loads and opens `dir/ID`, checking that its bytes hash to ID.
    pub fn load_sealed(&self, dir: &str, id: &Id) -> Result<Vec<u8>> {
        let name = format!("{dir}/{id}");
        let sealed = self.storage.read(&name)?;
        if Id::of_object(&sealed) != *id {
            return Err(Error::corrupt(
                &name,
                "content does not match its name (hash mismatch)",
            ));
        }
        self.crypto
            .open(&sealed, dir.as_bytes())
            .map_err(|e| Error::corrupt(&name, e))
    }

    pub fn save_json<T: Serialize>(&self, dir: &str, value: &T) -> Result<Id> {
        let json = serde_json::to_vec(value).map_err(|e| Error::Invalid(e.to_string()))?;
        self.save_sealed(dir, &json)
    }

    pub fn load_json<T: DeserializeOwned>(&self, dir: &str, id: &Id) -> Result<T> {
        let plain = self.load_sealed(dir, id)?;
        serde_json::from_slice(&plain).map_err(|e| Error::corrupt(format!("{dir}/{id}"), e))
    }

    /// Ids of the objects in `dir/` (names that are not ids are ignored).
    pub fn list_ids(&self, dir: &str) -> Result<Vec<(Id, u64)>> {
        Ok(self
            .storage
            .list(&format!("{dir}/"))?
            .into_iter()
            .filter_map(|o: ObjectInfo| {
                let id = o.name.rsplit('/').next()?.parse().ok()?;
                Some((id, o.size))
            })
            .collect())
    }

    // ------------------------------------------------------------------ snapshots

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        self.save_json("snapshots", snap)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        self.load_json("snapshots", id)
    }

    /// Every snapshot, oldest first. Snapshots that cannot be read are returned as errors
    /// beside the good ones.
    pub fn list_snapshots(&self) -> Result<SnapshotList> {
        let ids: Vec<Id> = self
            .list_ids("snapshots")?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        let results = crate::parallel::map(ids, 8, |id| (id, self.load_snapshot(&id)));
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (id, r) in results {
            match r {
                Ok(s) => good.push((id, s)),
                Err(e) => bad.push(e),
            }
        }
        good.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((good, bad))
    }

    // ------------------------------------------------------------------ index

    pub fn save_index_file(&self, file: &IndexFile) -> Result<Id> {
        self.save_sealed("index", &encode_index(file))
    }

    /// Writes `packs` as new index files that each supersede `supersedes`: a file holds
    /// at most [`INDEX_FILE_PACKS`] packs and, once past [`INDEX_FILE_BLOBS`] blobs, no
    /// further pack, so encoding one never needs more than a few MB whatever the
    /// repository's size. The packs are moved, not copied. Returns how many were written.
    pub fn save_index_files(
        &self,
        packs: impl IntoIterator<Item = IndexPack>,
        supersedes: &[Id],
    ) -> Result<usize> {
        let mut written = 0;
        let mut file: Vec<IndexPack> = Vec::new();
        let mut blobs = 0;
        let mut packs = packs.into_iter().peekable();
        while let Some(pack) = packs.next() {
            blobs += pack.blobs.len();
            file.push(pack);
            if blobs >= INDEX_FILE_BLOBS || file.len() >= INDEX_FILE_PACKS || packs.peek().is_none()
            {
                self.save_index_file(&IndexFile {
                    packs: std::mem::take(&mut file),
                    supersedes: supersedes.to_vec(),
                })?;
                written += 1;
                blobs = 0;
            }
        }
        Ok(written)
    }

    pub fn load_index_file(&self, id: &Id) -> Result<IndexFile> {
        let plain = self.load_sealed("index", id)?;
        decode_index(&plain).map_err(|e| Error::corrupt(format!("index/{id}"), e))
    }

    /// Loads every index file into memory.
    pub fn load_index(&self) -> Result<Index> {
        let ids: Vec<Id> = self
            .list_ids("index")?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        let files = crate::parallel::map(ids, 4, |id| self.load_index_file(&id));
        let mut files: Vec<IndexFile> = files.into_iter().collect::<Result<_>>()?;
        let mut index = Index::new();
        let total = files
            .iter()
            .flat_map(|f| &f.packs)
            .map(|p| p.blobs.len())
            .sum();
        index.reserve(total);
        for f in files.drain(..) {
            for p in &f.packs {
                index.insert_pack(p.id, &p.blobs);
            }
        }
        Ok(index)
    }

    /// Indexes packs that exist but no index file names (left by an interrupted backup),
    /// so their blobs are reused instead of stored again. Returns how many were adopted.
    pub fn adopt_unindexed_packs(&self, index: &mut Index) -> Result<usize> {
        let orphans: Vec<(Id, u64)> = self
            .list_ids("data")?
            .into_iter()
            .filter(|(id, _)| !index.has_pack(id))
            .collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        let headers = crate::parallel::map(orphans, 4, |(id, size)| {
            (id, self.read_pack_header(&id, Some(size)))
        });
        let packs: Vec<crate::format::IndexPack> = headers
            .into_iter()
            // A pack whose header cannot be read is left for check and prune.
            .filter_map(|(id, h)| h.ok().map(|blobs| crate::format::IndexPack { id, blobs }))
            .collect();
        if packs.is_empty() {
            return Ok(0);
        }
        for p in &packs {
            index.insert_pack(p.id, &p.blobs);
        }
        let n = packs.len();
        self.save_index_file(&IndexFile {
            packs,
            supersedes: Vec::new(),
        })?;
        Ok(n)
    }

    // ------------------------------------------------------------------ packs and blobs

    pub fn write_pack(&self, id: &Id, bytes: &[u8]) -> Result<()> {
        self.storage.write(&pack_name(id), bytes)?;
        Ok(())
    }

    /// Reads and parses the header of a pack.
    pub fn read_pack_header(&self, id: &Id, size: Option<u64>) -> Result<Vec<BlobEntry>> {
        let name = pack_name(id);
        let size = match size {
            Some(s) => s,
            None => self.storage.stat(&name)?.size,
        };
        let probe = size.min(HEADER_PROBE);
        let mut tail = self.storage.read_range(&name, size - probe, probe)?;
        if tail.len() >= 4 {
            let t = &tail[tail.len() - 4..];
            let (start, _) = pack::header_span(size, [t[0], t[1], t[2], t[3]])
                .map_err(|e| Error::corrupt(&name, e))?;
            if start < size - probe {
                tail = self.storage.read_range(&name, start, size - start)?;
            }
        }
        pack::parse_header_from_tail(&self.crypto, size, &tail)
            .map_err(|e| Error::corrupt(&name, e))
    }

    /// Reads, opens and verifies one blob.
    pub fn read_blob(&self, index: &Index, id: &Id) -> Result<Vec<u8>> {
        let loc = index.get(id).ok_or(Error::BlobNotFound(*id))?;
        let name = pack_name(&loc.pack);
        let sealed =
            self.storage
                .read_range(&name, loc.entry.offset as u64, loc.entry.length as u64)?;
        pack::open_blob(&self.crypto, &loc.entry, &sealed)
            .map_err(|e| Error::corrupt(format!("{name} (blob {id})"), e))
    }

    pub fn load_tree(&self, index: &Index, id: &Id) -> Result<Tree> {
        let data = self.read_blob(index, id)?;
        decode_tree(&data).map_err(|e| Error::corrupt(format!("tree {id}"), e))
    }
}

/// Resolves a snapshot reference among `snaps` (sorted oldest first).
pub fn resolve_in(snaps: &[(Id, Snapshot)], reference: &str) -> Result<(Id, Snapshot)> {
    if reference == "latest" {
        return snaps.last().cloned().ok_or_else(|| {
            Error::SnapshotNotFound("latest (the repository has no snapshots)".into())
        });
    }
    let r = reference.to_ascii_lowercase();
    if r.is_empty() || !r.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::SnapshotNotFound(reference.into()));
    }
    let matches: Vec<_> = snaps
        .iter()
        .filter(|(id, _)| id.to_hex().starts_with(&r))
        .collect();
    match matches.len() {
        0 => Err(Error::SnapshotNotFound(reference.into())),
        1 => Ok(matches[0].clone()),
        n => Err(Error::AmbiguousSnapshot(reference.into(), n)),
    }
}

/// Encodes a tree blob: version byte then postcard.
pub fn encode_tree(tree: &Tree) -> Vec<u8> {
    let mut out = vec![BINARY_VERSION];
    out.extend(postcard::to_stdvec(tree).unwrap_or_default());
    out
}

/// Why a (decrypted) tree blob does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeDecodeError {
    #[error("empty tree blob")]
    Empty,
    #[error("unknown tree version {0}")]
    Version(u8),
    #[error("{0}")]
    Malformed(String),
}

pub fn decode_tree(data: &[u8]) -> std::result::Result<Tree, TreeDecodeError> {
    let (&v, rest) = data.split_first().ok_or(TreeDecodeError::Empty)?;
    if v != BINARY_VERSION {
        return Err(TreeDecodeError::Version(v));
    }
    postcard::from_bytes(rest).map_err(|e| TreeDecodeError::Malformed(e.to_string()))
}

fn make_key_file(
    config: &Config,
    master: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
) -> Result<(Id, Vec<u8>)> {
    let wk = crypto::derive_key(password, &kdf).map_err(|e| Error::Invalid(e.to_string()))?;
    let wrapped = crypto::wrap_master_key(master, &wk, &config.id.0);
    let kf = KeyFile {
        version: FORMAT_VERSION,
        kind: KeyKind::Password,
        repository: config.id,
        created: jiff::Timestamp::now(),
        host: hostname(),
        username: username(),
        kdf,
        wrapped: hex::encode(wrapped),
    };
    let bytes = serde_json::to_vec_pretty(&kf).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((Id::random(), bytes))
}

fn unwrap_key(kf: &KeyFile, password: &[u8]) -> Result<MasterKey> {
    let wrapped = hex::decode(&kf.wrapped).map_err(|e| Error::corrupt("key file", e))?;
    let wk = crypto::derive_key(password, &kf.kdf).map_err(|e| Error::corrupt("key file", e))?;
    crypto::unwrap_master_key(&wrapped, &wk, &kf.repository.0)
        .map_err(|_| Error::WrongPassword(String::new()))
}
