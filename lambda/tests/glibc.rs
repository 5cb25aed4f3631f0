//! The deployment binary must run on Amazon Linux 2023, whose glibc is 2.34: no symbol
//! version it needs may be newer.
//!
//! The test reads the ELF version-needed section (`.gnu.version_r`) of the binary named by
//! `EDGEALERT_LAMBDA_BOOTSTRAP`, which `scripts/test` sets after `scripts/build-lambda`.

use std::path::PathBuf;

/// The newest glibc of the `provided.al2023` runtime.
const MAX_GLIBC: (u32, u32) = (2, 34);

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()))
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}

fn u64_at(bytes: &[u8], at: usize) -> usize {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize
}

fn c_string(bytes: &[u8], at: usize) -> String {
    let end = bytes[at..].iter().position(|&b| b == 0).unwrap() + at;
    String::from_utf8_lossy(&bytes[at..end]).into_owned()
}

/// Returns `(library, version)` of every version the binary needs, from a 64-bit
/// little-endian ELF file.
fn needed_versions(elf: &[u8]) -> Vec<(String, String)> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    assert_eq!(elf[5], 1, "not a little-endian ELF file");
    let section_headers = u64_at(elf, 0x28);
    let header_size = u16_at(elf, 0x3a);
    let count = u16_at(elf, 0x3c);
    let section = |index: usize| section_headers + index * header_size;
    let mut versions = Vec::new();
    for index in 0..count {
        let header = section(index);
        if u32_at(elf, header + 4) != SHT_GNU_VERNEED as usize {
            continue;
        }
        let offset = u64_at(elf, header + 0x18);
        let entries = u32_at(elf, header + 0x2c);
        let strings = u64_at(elf, section(u32_at(elf, header + 0x28)) + 0x18);
        let mut need = offset;
        for _ in 0..entries {
            let aux_count = u16_at(elf, need + 2);
            let library = c_string(elf, strings + u32_at(elf, need + 4));
            let mut aux = need + u32_at(elf, need + 8);
            for _ in 0..aux_count {
                let name = c_string(elf, strings + u32_at(elf, aux + 8));
                versions.push((library.clone(), name));
                aux += u32_at(elf, aux + 12);
            }
            need += u32_at(elf, need + 12);
        }
    }
    versions
}

fn glibc_version(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("GLIBC_")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[test]
#[ignore = "needs EDGEALERT_LAMBDA_BOOTSTRAP from scripts/build-lambda; scripts/test runs it"]
fn deployment_binary_needs_at_most_glibc_2_34() {
    let path =
        PathBuf::from(std::env::var_os("EDGEALERT_LAMBDA_BOOTSTRAP").expect(
            "set EDGEALERT_LAMBDA_BOOTSTRAP to the bootstrap built by scripts/build-lambda",
        ));
    let elf = std::fs::read(&path).unwrap();
    let versions = needed_versions(&elf);

    let glibc: Vec<(u32, u32)> = versions
        .iter()
        .filter_map(|(_, name)| glibc_version(name))
        .collect();
    assert!(!glibc.is_empty(), "no GLIBC versions found in {versions:?}");
    let newest = glibc.iter().max().unwrap();
    assert!(
        *newest <= MAX_GLIBC,
        "{} needs GLIBC_{}.{}, newer than Amazon Linux 2023's 2.34: {versions:?}",
        path.display(),
        newest.0,
        newest.1
    );
}

#[test]
fn needed_versions_reads_the_test_binary() {
    let elf = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let versions = needed_versions(&elf);
    assert!(
        versions
            .iter()
            .any(|(library, name)| library.starts_with("libc.so") && name.starts_with("GLIBC_2.")),
        "{versions:?}"
    );
    assert_eq!(glibc_version("GLIBC_2.34"), Some((2, 34)));
    assert_eq!(glibc_version("GLIBC_PRIVATE"), None);
}
