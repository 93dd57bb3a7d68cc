namespace SpecVm.Mm;

/// <summary>Memory protection of a mapping (POSIX <c>PROT_*</c>).</summary>
[Flags]
public enum Protection
{
    /// <summary>No access (<c>PROT_NONE</c>).</summary>
    None = 0,

    /// <summary>Readable.</summary>
    Read = 1,

    /// <summary>Writable (on x86 this implies readable, and SpecVm follows).</summary>
    Write = 2,

    /// <summary>
    /// Executable (recorded in the PTE's no-execute bit; SpecVm models no instruction fetch). As on x86 Linux, it
    /// implies readable: a read of an execute-only page succeeds, whether or not the page was present before.
    /// </summary>
    Execute = 4,

    /// <summary>Readable and writable.</summary>
    ReadWrite = Read | Write,
}

/// <summary>What backs a mapping.</summary>
public enum MappingKind
{
    /// <summary>Private anonymous memory (<c>MAP_PRIVATE | MAP_ANONYMOUS</c>), zero-filled on first touch.</summary>
    Anonymous = 0,

    /// <summary>A private file mapping (<c>MAP_PRIVATE</c>): reads see the page cache, writes copy on write.</summary>
    PrivateFile = 1,

    /// <summary>A shared file mapping (<c>MAP_SHARED</c>): reads and writes go to the page cache.</summary>
    SharedFile = 2,
}

/// <summary>The outcome of a simulated memory access.</summary>
public enum AccessResult
{
    /// <summary>The access completed.</summary>
    Ok = 0,

    /// <summary>No mapping, or the mapping forbids the access: the kernel would send SIGSEGV.</summary>
    SegmentationFault = 1,

    /// <summary>No free frame to satisfy the fault (the kernel's VM_FAULT_OOM); recoverable after freeing memory.</summary>
    OutOfMemory = 2,
}

/// <summary>A simulated access failed (thrown by the non-Try accessors).</summary>
public sealed class SegmentationFaultException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="address">The faulting address.</param>
    /// <param name="write">True for a write access.</param>
    /// <param name="result">Why it failed.</param>
    public SegmentationFaultException(ulong address, bool write, AccessResult result)
        : base(result == AccessResult.OutOfMemory
            ? $"Out of physical memory handling a {(write ? "write" : "read")} fault at 0x{address:x}."
            : $"Segmentation fault: {(write ? "write" : "read")} at 0x{address:x}.")
    {
        Address = address;
        IsWrite = write;
        Result = result;
    }

    /// <summary>The faulting address.</summary>
    public ulong Address { get; }

    /// <summary>True for a write.</summary>
    public bool IsWrite { get; }

    /// <summary>The failed access's result.</summary>
    public AccessResult Result { get; }
}
