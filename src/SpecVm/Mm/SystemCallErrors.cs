namespace SpecVm.Mm;

/// <summary>
/// The error numbers the address space's system calls fail with, as Linux's <c>mmap</c>, <c>munmap</c>,
/// <c>mprotect</c> and <c>madvise</c> return them (values from include/uapi/asm-generic/errno-base.h).
/// </summary>
public enum Errno
{
    /// <summary>Cannot allocate memory: no free range for a mapping, or a range that is not fully mapped (mprotect, madvise).</summary>
    ENOMEM = 12,

    /// <summary>Invalid argument: unaligned, empty or out-of-range (argument checks throw <see cref="ArgumentException"/> for these).</summary>
    EINVAL = 22,
}

/// <summary>A system-call failure that Linux reports with an error number: read it from <see cref="Errno"/>.</summary>
public interface ISystemCallError
{
    /// <summary>The error number the system call returns in Linux.</summary>
    Errno Errno { get; }
}

/// <summary>
/// mprotect or madvise on a range with a hole (Linux: <c>ENOMEM</c>, "addresses in the range are not mapped"). An
/// <see cref="ArgumentException"/> naming the range's start, thrown before anything changes.
/// </summary>
public sealed class UnmappedRangeException : ArgumentException, ISystemCallError
{
    /// <summary>Creates the error for the range [<paramref name="start"/>, <paramref name="end"/>) with a hole at <paramref name="hole"/>.</summary>
    /// <param name="start">The range's first address.</param>
    /// <param name="end">The range's end (exclusive).</param>
    /// <param name="hole">The first address no VMA covers.</param>
    /// <param name="paramName">The argument that named the start.</param>
    public UnmappedRangeException(ulong start, ulong end, ulong hole, string? paramName)
        : base($"ENOMEM: [0x{start:x}, 0x{end:x}) is not fully mapped (hole at 0x{hole:x}).", paramName)
    {
        Hole = hole;
    }

    /// <summary>The first address of the range that no VMA covers.</summary>
    public ulong Hole { get; }

    /// <inheritdoc/>
    public Errno Errno => Errno.ENOMEM;
}

/// <summary>
/// mmap found no free range of the requested length (Linux: <c>ENOMEM</c>). An <see cref="InvalidOperationException"/>:
/// the arguments are valid, the address space is full; nothing changed.
/// </summary>
public sealed class AddressSpaceFullException : InvalidOperationException, ISystemCallError
{
    /// <summary>Creates the error for a mapping of <paramref name="length"/> bytes.</summary>
    /// <param name="length">The length that did not fit.</param>
    public AddressSpaceFullException(ulong length)
        : base($"ENOMEM: no free range of {length} bytes in the address space.")
    {
        Length = length;
    }

    /// <summary>The length that did not fit.</summary>
    public ulong Length { get; }

    /// <inheritdoc/>
    public Errno Errno => Errno.ENOMEM;
}
