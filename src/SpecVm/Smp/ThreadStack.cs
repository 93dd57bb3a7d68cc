using System.Runtime.InteropServices;

namespace SpecVm.Smp;

/// <summary>
/// The calling thread's stack range, from the OS: what lets the access path check "the caller runs as this CPU" with a
/// compare of the stack pointer against the CPU's bound range instead of a thread-static read (on Linux a thread-static
/// is a call into <c>__tls_get_addr</c>, a third of a TLB hit's cost). Thread stacks never overlap, so a stack address
/// inside the range bound to a CPU proves the caller is the thread bound to it.
/// </summary>
internal static unsafe partial class ThreadStack
{
    /// <summary>
    /// The calling thread's stack, <c>[low, low + size)</c>; false where the OS cannot say (the caller then falls back to
    /// the thread-static check).
    /// </summary>
    public static bool TryGetCurrent(out nuint low, out nuint size)
    {
        low = 0;
        size = 0;
        try
        {
            if (OperatingSystem.IsLinux() || OperatingSystem.IsFreeBSD())
            {
                // pthread_attr_t is 56 bytes on glibc x86-64 and arm64, 36-64 elsewhere: 256 covers every libc.
                byte* attr = stackalloc byte[256];
                if (PthreadGetAttrNp(PthreadSelf(), attr) != 0)
                {
                    return false;
                }

                try
                {
                    void* address;
                    nuint bytes;
                    if (PthreadAttrGetStack(attr, &address, &bytes) != 0)
                    {
                        return false;
                    }

                    low = (nuint)address;
                    size = bytes;
                }
                finally
                {
                    _ = PthreadAttrDestroy(attr);
                }
            }
            else if (OperatingSystem.IsMacOS())
            {
                nint self = PthreadSelf();
                nuint top = PthreadGetStackAddrNp(self);
                size = PthreadGetStackSizeNp(self);
                low = top - size;
            }
            else if (OperatingSystem.IsWindows())
            {
                GetCurrentThreadStackLimits(out nuint lo, out nuint hi);
                low = lo;
                size = hi - lo;
            }
            else
            {
                return false;
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            low = 0;
            size = 0;
            return false; // An old glibc keeps pthread_getattr_np in libpthread: the thread-static check serves.
        }

        // Sanity: the range must hold this frame, or it is not ours.
        byte marker = 0;
        if (size == 0 || (nuint)(&marker) - low >= size)
        {
            low = 0;
            size = 0;
            return false;
        }

        return true;
    }

    [LibraryImport("libc", EntryPoint = "pthread_self")]
    private static partial nint PthreadSelf();

    [LibraryImport("libc", EntryPoint = "pthread_getattr_np")]
    private static partial int PthreadGetAttrNp(nint thread, byte* attr);

    [LibraryImport("libc", EntryPoint = "pthread_attr_getstack")]
    private static partial int PthreadAttrGetStack(byte* attr, void** address, nuint* size);

    [LibraryImport("libc", EntryPoint = "pthread_attr_destroy")]
    private static partial int PthreadAttrDestroy(byte* attr);

    [LibraryImport("libc", EntryPoint = "pthread_get_stackaddr_np")]
    private static partial nuint PthreadGetStackAddrNp(nint thread);

    [LibraryImport("libc", EntryPoint = "pthread_get_stacksize_np")]
    private static partial nuint PthreadGetStackSizeNp(nint thread);

    [LibraryImport("kernel32", EntryPoint = "GetCurrentThreadStackLimits")]
    private static partial void GetCurrentThreadStackLimits(out nuint low, out nuint high);
}
