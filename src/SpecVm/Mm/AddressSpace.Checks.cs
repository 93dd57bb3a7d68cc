using System.Runtime.CompilerServices;
using SpecVm.Paging;
using SpecVm.Smp;

namespace SpecVm.Mm;

// AddressSpace, by operation: argument and context checks of the system calls; each throws, naming the argument or
// the rule, before anything changes.
public sealed unsafe partial class AddressSpace
{
    // ---- argument checks ----

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNotOnCpuThread(Cpu cpu) =>
        throw new InvalidOperationException($"CPU {cpu.Id} is used from a thread that is not that CPU (thread {Environment.CurrentManagedThreadId}): run the code with Machine.Run, or take the CPU with Machine.Attach.");

    /// <summary>The checks of every operation: a CPU of this machine, on its own thread, and not disposed.</summary>
    private void CheckCpu(Cpu cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        if (!ReferenceEquals(cpu.Machine, _machine))
        {
            throw new ArgumentException($"CPU {cpu.Id} belongs to another machine.", nameof(cpu));
        }

        // Acquire read of the disposed flag: a misuse check (use after Dispose); the access path has its own.
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!cpu.IsCurrentThread)
        {
            ThrowNotOnCpuThread(cpu);
        }
    }

    /// <summary>The checks of a system call (mmap, munmap, mprotect, madvise): those of <see cref="CheckCpu"/>, and interrupts enabled.</summary>
    private void CheckSyscall(Cpu cpu)
    {
        CheckCpu(cpu);
        if (cpu.IrqsDisabled)
        {
            // Checked before anything changes: a system call may sleep on the mmap lock and sends shootdowns, and
            // neither is allowed with interrupts off; failing half-way would leave frames stuck awaiting a flush.
            throw new InvalidOperationException($"CPU {cpu.Id}: a system call with interrupts disabled (it may sleep and must shoot down TLBs). Enable interrupts first.");
        }
    }

    private static void CheckLength(ulong length)
    {
        if (length == 0 || (length & PageMask) != 0)
        {
            throw new ArgumentException($"Length must be a positive multiple of 4096 bytes (got {length}).", nameof(length));
        }

        if (length > PageTable.UserTop - MinAddress)
        {
            // Larger than user space: no placement can hold it, and start + length would wrap around.
            throw new ArgumentOutOfRangeException(nameof(length), length, $"Length exceeds the user address space (0x{PageTable.UserTop - MinAddress:x} bytes).");
        }
    }

    private static void CheckRange(ulong start, ulong length, string name)
    {
        if ((start & PageMask) != 0)
        {
            throw new ArgumentException($"Address 0x{start:x} is not page aligned.", name);
        }

        if (start < MinAddress || start >= PageTable.UserTop || length > PageTable.UserTop - start)
        {
            throw new ArgumentOutOfRangeException(name, $"Range [0x{start:x}, +0x{length:x}) is outside user space [0x{MinAddress:x}, 0x{PageTable.UserTop:x}).");
        }
    }

    private static void CheckProtection(Protection protection)
    {
        if ((protection & ~(Protection.Read | Protection.Write | Protection.Execute)) != 0)
        {
            throw new ArgumentException($"Unknown protection bits: {protection}.", nameof(protection));
        }
    }

    private void CheckBacking(ulong length, Protection protection, MappingKind kind, SimFile? file, long fileOffset)
    {
        switch (kind)
        {
            case MappingKind.Anonymous:
                if (file != null)
                {
                    throw new ArgumentException("An anonymous mapping takes no file.", nameof(file));
                }

                break;
            case MappingKind.PrivateFile:
            case MappingKind.SharedFile:
                if (file == null)
                {
                    throw new ArgumentNullException(nameof(file), $"A {kind} mapping needs a file.");
                }

                if (!ReferenceEquals(file.Machine, _machine))
                {
                    throw new ArgumentException($"File {file.Id} belongs to another machine (its page cache is in that machine's memory).", nameof(file));
                }

                ObjectDisposedException.ThrowIf(file.IsDisposed, file);

                // length is at most the user space size (CheckLength), so it fits a long; subtracting avoids the
                // overflow of fileOffset + length near 2^63.
                if (fileOffset < 0 || (fileOffset & (long)PageMask) != 0 || fileOffset > file.Length || (long)length > file.Length - fileOffset)
                {
                    throw new ArgumentOutOfRangeException(nameof(fileOffset), fileOffset, $"File range [{fileOffset}, +{length}) must be page aligned and inside the file (length {file.Length}).");
                }

                if (kind == MappingKind.SharedFile && (protection & Protection.Write) != 0 && !file.IsWritable)
                {
                    throw new ArgumentException($"EACCES: file {file.Id} was opened read-only; a shared mapping of it cannot be writable.", nameof(protection));
                }

                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown mapping kind.");
        }
    }

    private static void CheckFullyMapped(List<Vma> vmas, ulong start, ulong end, string name)
    {
        ulong at = start;
        foreach (Vma v in vmas)
        {
            if (v.Start > at)
            {
                break;
            }

            at = Math.Max(at, v.End);
        }

        if (at < end)
        {
            throw new UnmappedRangeException(start, end, at, name);
        }
    }
}
