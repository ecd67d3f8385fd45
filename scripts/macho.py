"""Reading (and, for the UUID, rewriting) 64-bit Mach-O executables, for the release scripts
that build and check the macOS binaries on Linux: scripts/check-binaries and
scripts/macho-stable-uuid. Only what those need: the header, the load commands, and the
CodeDirectory of an embedded code signature.
"""
import hashlib
import struct

MH_MAGIC_64 = 0xFEEDFACF
LC_LOAD_DYLIB, LC_UUID, LC_CODE_SIGNATURE, LC_BUILD_VERSION = 0x0C, 0x1B, 0x1D, 0x32
CSMAGIC_EMBEDDED_SIGNATURE, CSMAGIC_CODEDIRECTORY = 0xFADE0CC0, 0xFADE0C02
CSMAGIC_BLOBWRAPPER = 0xFADE0B01  # a CMS signature: present only when signed with an identity
HASHES = {1: hashlib.sha1, 2: hashlib.sha256}


class MachOError(Exception):
    """The file is not what the release scripts can read."""


def header(data):
    """(cputype, filetype, ncmds, flags) of a 64-bit little-endian Mach-O file."""
    magic, cputype, _, filetype, ncmds, _, flags = struct.unpack_from("<IiiIIII", data, 0)
    if magic != MH_MAGIC_64:
        raise MachOError(f"not a 64-bit Mach-O file (magic {magic:#x})")
    return cputype, filetype, ncmds, flags


def load_commands(data):
    """(cmd, offset, size) of each load command, in order."""
    _, _, ncmds, _ = header(data)
    commands, offset = [], 32
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, offset)
        commands.append((cmd, offset, size))
        offset += size
    return commands


def code_signature(data):
    """(dataoff, datasize) of LC_CODE_SIGNATURE, or None for an unsigned file."""
    for cmd, offset, _ in load_commands(data):
        if cmd == LC_CODE_SIGNATURE:
            return struct.unpack_from("<II", data, offset + 8)
    return None


class CodeDirectory:
    """One CodeDirectory of an embedded signature: a hash for each page of the file up to
    code_limit, at file offset hashes_at (the blob's own offsets are big-endian)."""

    def __init__(self, data, at):
        (_, _, _, _, hash_offset, _, _, self.n_slots, self.code_limit, self.hash_size,
         self.hash_type, _, page_shift) = struct.unpack_from(">IIIIIIIIIBBBB", data, at)
        if self.hash_type not in HASHES:
            raise MachOError(f"code directory hash type {self.hash_type}")
        self.page = 1 << page_shift
        self.hashes_at = at + hash_offset

    def page_hash(self, data, slot):
        end = min((slot + 1) * self.page, self.code_limit)
        return HASHES[self.hash_type](data[slot * self.page : end]).digest()[: self.hash_size]

    def stored_hash(self, data, slot):
        start = self.hashes_at + slot * self.hash_size
        return bytes(data[start : start + self.hash_size])

    def mismatched_slots(self, data):
        """Pages whose hash is not the stored one: a file changed after signing."""
        return [s for s in range(self.n_slots) if self.page_hash(data, s) != self.stored_hash(data, s)]

    def rehash(self, data):
        """Stores the hash of every page of DATA (a bytearray) again."""
        for slot in range(self.n_slots):
            start = self.hashes_at + slot * self.hash_size
            data[start : start + self.hash_size] = self.page_hash(data, slot)


def code_directories(data):
    """The CodeDirectories of the embedded signature (none for an unsigned file), and whether
    the signature also holds a CMS blob (a signature with an identity, not ad hoc)."""
    signature = code_signature(data)
    if signature is None:
        return [], False
    dataoff, _ = signature
    magic, _, count = struct.unpack_from(">III", data, dataoff)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        raise MachOError(f"code signature magic {magic:#x}")
    directories, has_cms = [], False
    for i in range(count):
        _, offset = struct.unpack_from(">II", data, dataoff + 12 + 8 * i)
        blob_magic, blob_length = struct.unpack_from(">II", data, dataoff + offset)
        if blob_magic == CSMAGIC_CODEDIRECTORY:
            directory = CodeDirectory(data, dataoff + offset)
            if directory.code_limit != dataoff:
                raise MachOError(
                    f"code directory covers {directory.code_limit} bytes, the signature starts at {dataoff}"
                )
            directories.append(directory)
        elif blob_magic == CSMAGIC_BLOBWRAPPER and blob_length > 8:
            has_cms = True
    if not directories:
        raise MachOError("no code directory in the signature")
    return directories, has_cms
