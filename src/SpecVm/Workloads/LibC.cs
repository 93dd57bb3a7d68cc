using System.ComponentModel;
using System.Runtime.InteropServices;

namespace SpecVm.Workloads;

/// <summary>The few libc calls the native workloads use (Linux; constants are the same on x86-64 and arm64).</summary>
internal static unsafe partial class LibC
{
    public const int ProtRead = 1;
    public const int ProtWrite = 2;
    public const int MapShared = 0x01;
    public const int MapPrivate = 0x02;
    public const int MapAnonymous = 0x20;
    public const int MadvDontNeed = 4;
    public const uint MfdCloexec = 1;

    /// <summary>Maps memory or throws with errno.</summary>
    public static byte* MapOrThrow(nuint length, int flags, int fd)
    {
        void* p = Mmap(null, length, ProtRead | ProtWrite, flags, fd, 0);
        if (p == (void*)-1)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), $"mmap of {length} bytes failed");
        }

        return (byte*)p;
    }

    /// <summary>Unmaps or throws with errno.</summary>
    public static void UnmapOrThrow(byte* p, nuint length)
    {
        if (Munmap(p, length) != 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), "munmap failed");
        }
    }

    /// <summary>mprotect(PROT_NONE) or throws.</summary>
    public static void ProtectNoneOrThrow(byte* p, nuint length)
    {
        if (Mprotect(p, length, 0) != 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), "mprotect failed");
        }
    }

    /// <summary>madvise(MADV_DONTNEED) or throws.</summary>
    public static void DontNeedOrThrow(byte* p, nuint length)
    {
        if (Madvise(p, length, MadvDontNeed) != 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), "madvise(MADV_DONTNEED) failed");
        }
    }

    /// <summary>An anonymous memory file of <paramref name="length"/> bytes (memfd_create + ftruncate), or throws.</summary>
    public static int CreateMemFile(string name, long length)
    {
        int fd = MemfdCreate(name, MfdCloexec);
        if (fd < 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), "memfd_create failed");
        }

        if (Ftruncate(fd, length) != 0)
        {
            int err = Marshal.GetLastPInvokeError();
            _ = Close(fd);
            throw new Win32Exception(err, "ftruncate failed");
        }

        return fd;
    }

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial void* Mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(void* addr, nuint length);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(void* addr, nuint length, int prot);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(void* addr, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MemfdCreate(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int Ftruncate(int fd, long length);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);
}
