using SpecVm.Memory;
using SpecVm.Smp;

namespace SpecVm.Mm;

/// <summary>
/// A simple in-memory file with a page cache (Linux <c>struct address_space</c>): its pages are frames of the
/// machine, created zero-filled on first use (a sparse file) and kept until the file is disposed. Private mappings
/// copy from these pages on write; shared mappings map them directly.
/// </summary>
public sealed unsafe class SimFile : IDisposable
{
    private static long s_nextId;
    private readonly Machine _machine;
    private readonly long[] _pages; // PFN + 1, or 0 when the page is not cached yet.
    private int _disposed;

    /// <summary>Creates a file of <paramref name="length"/> bytes.</summary>
    /// <param name="machine">The machine whose frames hold the page cache.</param>
    /// <param name="length">The size in bytes: positive and a multiple of 4 KiB.</param>
    /// <param name="writable">False for a file opened read-only: shared writable mappings of it are refused.</param>
    public SimFile(Machine machine, long length, bool writable = true)
    {
        ArgumentNullException.ThrowIfNull(machine);
        if (length <= 0 || (length & (PhysicalMemory.PageSize - 1)) != 0)
        {
            throw new ArgumentException($"File length must be a positive multiple of 4096 bytes (got {length}).", nameof(length));
        }

        _machine = machine;
        Length = length;
        IsWritable = writable;
        _pages = new long[length / PhysicalMemory.PageSize];
        Id = Interlocked.Increment(ref s_nextId); // Atomic: files may be created on several threads; ids stay unique.
    }

    /// <summary>A unique id.</summary>
    public long Id { get; }

    /// <summary>The size in bytes.</summary>
    public long Length { get; }

    /// <summary>The size in pages.</summary>
    public long Pages => _pages.Length;

    /// <summary>True if the file may be mapped shared and writable.</summary>
    public bool IsWritable { get; }

    /// <summary>Pages currently in the page cache.</summary>
    public long CachedPages => _pages.LongCount(p => Volatile.Read(ref p) != 0);

    /// <summary>
    /// The page-cache frame of page <paramref name="index"/>, reading it in (zero-filled) if needed; -1 when out of frames.
    /// Two CPUs reading in the same page agree on one frame (the loser frees its copy).
    /// </summary>
    /// <param name="cpu">The CPU doing the read, or -1.</param>
    /// <param name="index">The page index, 0 to <see cref="Pages"/> - 1.</param>
    public long GetPage(int cpu, long index)
    {
        if ((ulong)index >= (ulong)_pages.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"Page index must be in 0..{_pages.Length - 1}.");
        }

        // Acquire: a published page's zeroed data and metadata are visible.
        long cached = Volatile.Read(ref _pages[index]);
        if (cached != 0)
        {
            return cached - 1;
        }

        // Acquire read of the disposed flag: a best-effort misuse check (use after Dispose), not a synchronization.
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        long pfn = _machine.Frames.TryAllocate(cpu, FrameState.Preparing);
        if (pfn < 0)
        {
            return -1;
        }

        new Span<byte>(_machine.Memory.FrameData(pfn), PhysicalMemory.PageSize).Clear();
        ref PageFrame frame = ref _machine.Memory.Frame(pfn);
        frame.Owner = Id;
        frame.Index = index;
        frame.WriteState(FrameState.PageCache);

        // CAS (full fence): publishes the zeroed page; losing means another CPU read it in first.
        long seen = Interlocked.CompareExchange(ref _pages[index], pfn + 1, 0);
        if (seen != 0)
        {
            _machine.Frames.Free(cpu, pfn);
            return seen - 1;
        }

        return pfn;
    }

    /// <summary>Writes bytes at <paramref name="offset"/> through the page cache (<c>pwrite</c>).</summary>
    /// <param name="offset">Byte offset.</param>
    /// <param name="data">The bytes; the range must lie inside the file.</param>
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(offset, data.Length);
        while (!data.IsEmpty)
        {
            long page = offset / PhysicalMemory.PageSize;
            int inPage = (int)(offset % PhysicalMemory.PageSize);
            int n = Math.Min(data.Length, PhysicalMemory.PageSize - inPage);
            long pfn = GetPage(-1, page);
            if (pfn < 0)
            {
                throw new OutOfFramesException();
            }

            data[..n].CopyTo(new Span<byte>(_machine.Memory.FrameData(pfn) + inPage, n));
            _machine.Memory.Frame(pfn).Flags |= (int)PageFrameFlags.Dirty;
            data = data[n..];
            offset += n;
        }
    }

    /// <summary>Reads bytes at <paramref name="offset"/> through the page cache (<c>pread</c>).</summary>
    /// <param name="offset">Byte offset.</param>
    /// <param name="into">Where to put them; the range must lie inside the file.</param>
    public void Read(long offset, Span<byte> into)
    {
        CheckRange(offset, into.Length);
        while (!into.IsEmpty)
        {
            long page = offset / PhysicalMemory.PageSize;
            int inPage = (int)(offset % PhysicalMemory.PageSize);
            int n = Math.Min(into.Length, PhysicalMemory.PageSize - inPage);
            // Acquire: a published page's zeroed contents are visible (pairs with the CAS in GetPage).
            long cached = Volatile.Read(ref _pages[page]);
            if (cached == 0)
            {
                into[..n].Clear();
            }
            else
            {
                new ReadOnlySpan<byte>(_machine.Memory.FrameData(cached - 1) + inPage, n).CopyTo(into);
            }

            into = into[n..];
            offset += n;
        }
    }

    /// <summary>Drops the page cache. Throws if a page is still mapped.</summary>
    public void Dispose()
    {
        // Exchange: one disposer wins; GetPage refuses to read new pages in once it sees the flag.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        for (long i = 0; i < _pages.Length; i++)
        {
            long cached = _pages[i];
            // Acquire read of the map count: a file must be unmapped (by the caller, before this) to be disposed.
            if (cached != 0 && Volatile.Read(ref _machine.Memory.Frame(cached - 1).MapCount) != 0)
            {
                Volatile.Write(ref _disposed, 0); // Still mapped: undo the claim so the file stays usable.
                throw new InvalidOperationException($"File {Id} is still mapped (page {i}); unmap it before disposing.");
            }
        }

        for (long i = 0; i < _pages.Length; i++)
        {
            // Exchange: takes each page exactly once, even against a racing GetPage that published it late.
            long cached = Interlocked.Exchange(ref _pages[i], 0);
            if (cached != 0)
            {
                _machine.Frames.Free(-1, cached - 1);
            }
        }
    }

    private void CheckRange(long offset, int count)
    {
        if (offset < 0 || offset + count > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"Range [{offset}, {offset + count}) is outside the file (length {Length}).");
        }
    }
}
