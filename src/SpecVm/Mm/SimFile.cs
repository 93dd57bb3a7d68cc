using SpecVm.Memory;
using SpecVm.Smp;

namespace SpecVm.Mm;

/// <summary>
/// A simple in-memory file with a page cache (Linux <c>struct address_space</c>): its pages are frames of the
/// machine, created zero-filled on first use (a sparse file) and kept until the file is disposed. Private mappings
/// copy from these pages on write; shared mappings map them directly.
/// </summary>
/// <remarks>
/// Disposing a file closes it, as closing a file descriptor does in Linux: it can no longer be read, written or mapped,
/// but mappings made before keep working, and the page cache is freed when the last VMA that maps the file goes
/// (<see cref="Mappings"/> counts them). A file created read-only refuses <see cref="Write"/> (Linux's <c>EBADF</c>
/// for a write to a file opened <c>O_RDONLY</c>) and shared writable mappings (<c>EACCES</c>). Disposing the machine
/// first is allowed: the page cache went with it, and the file's <see cref="Dispose"/> is then a no-op.
/// </remarks>
public sealed unsafe class SimFile : IDisposable
{
    private static long s_nextId;
    private readonly Machine _machine;
    private readonly long[] _pages; // PFN + 1, or 0 when the page is not cached yet.

    /// <summary>Set in <see cref="_mappings"/> once the file is closed (disposed): no new mapping may count itself.</summary>
    private const int ClosedBit = 1 << 30;

    /// <summary>
    /// The VMAs mapping this file, plus <see cref="ClosedBit"/> once disposed: one word, so that a racing Map and
    /// Dispose agree (a mapping counts itself only while the bit is clear) and exactly one of Dispose and the last
    /// unmap sees "closed and unmapped" and frees the page cache.
    /// </summary>
    private int _mappings;

    /// <summary>Nonzero once the page cache was freed (exactly once).</summary>
    private int _freed;

    /// <summary>Creates a file of <paramref name="length"/> bytes.</summary>
    /// <param name="machine">The machine whose frames hold the page cache.</param>
    /// <param name="length">The size in bytes: positive and a multiple of 4 KiB.</param>
    /// <param name="writable">False for a file opened read-only: shared writable mappings of it are refused.</param>
    public SimFile(Machine machine, long length, bool writable = true)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ObjectDisposedException.ThrowIf(machine.IsDisposed, machine);
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

    /// <summary>Creates a file holding <paramref name="contents"/> (a file that already exists, for instance read-only).</summary>
    /// <param name="machine">The machine whose frames hold the page cache.</param>
    /// <param name="contents">The file's bytes; the length must be a positive multiple of 4 KiB.</param>
    /// <param name="writable">False for a file opened read-only: writes and shared writable mappings are refused.</param>
    public static SimFile FromContents(Machine machine, ReadOnlySpan<byte> contents, bool writable = true)
    {
        var file = new SimFile(machine, contents.Length, writable);
        file.Populate(0, contents);
        return file;
    }

    /// <summary>A unique id.</summary>
    public long Id { get; }

    /// <summary>The size in bytes.</summary>
    public long Length { get; }

    /// <summary>The size in pages.</summary>
    public long Pages => _pages.Length;

    /// <summary>True if the file may be mapped shared and writable.</summary>
    public bool IsWritable { get; }

    /// <summary>The machine whose memory holds the page cache.</summary>
    internal Machine Machine => _machine;

    /// <summary>True once disposed (acquire read; a misuse check).</summary>
    internal bool IsDisposed => (Volatile.Read(ref _mappings) & ClosedBit) != 0;

    /// <summary>The number of VMAs that map this file (a racy snapshot).</summary>
    public int Mappings => Volatile.Read(ref _mappings) & ~ClosedBit;

    /// <summary>Pages currently in the page cache.</summary>
    public long CachedPages => _pages.LongCount(p => Volatile.Read(ref p) != 0);

    /// <summary>
    /// True if page <paramref name="index"/> is in the page cache now (what Linux's fault-around, <c>filemap_map_pages</c>,
    /// can map without calling <c>-&gt;fault</c>). A racy answer: the page may be read in right after.
    /// </summary>
    /// <param name="index">The page index in the file.</param>
    internal bool IsCached(long index) =>
        (ulong)index < (ulong)_pages.Length && Volatile.Read(ref _pages[index]) != 0; // Acquire, as GetPage's read.

    /// <summary>
    /// The page-cache frame of page <paramref name="index"/>, reading it in (zero-filled) if needed; -1 when out of frames.
    /// Two CPUs reading in the same page agree on one frame (the loser frees its copy).
    /// </summary>
    /// <param name="cpu">The CPU doing the read, or -1.</param>
    /// <param name="index">The page index, 0 to <see cref="Pages"/> - 1.</param>
    internal long GetPage(int cpu, long index)
    {
        ObjectDisposedException.ThrowIf(_machine.IsDisposed, _machine);
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

        // Acquire read: the page cache is freed once the file is closed and unmapped; a closed file that is still
        // mapped keeps reading pages in for its mappings' faults.
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _freed) != 0, this);
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
    /// <exception cref="InvalidOperationException">The file was created read-only.</exception>
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (!IsWritable)
        {
            throw new InvalidOperationException($"EBADF: file {Id} was created read-only; it cannot be written.");
        }

        CheckUsable();
        CheckRange(offset, data.Length, nameof(data));
        Populate(offset, data);
    }

    /// <summary>Writes through the page cache whatever the file's mode (its creation, and tests that model other writers).</summary>
    internal void Populate(long offset, ReadOnlySpan<byte> data)
    {
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
        CheckUsable();
        CheckRange(offset, into.Length, nameof(into));
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

    /// <summary>
    /// Closes the file: no new reads, writes or mappings. The page cache is freed now if nothing maps the file, else
    /// when the last mapping goes. Calling it twice is fine; after the machine's disposal it only marks the file.
    /// </summary>
    public void Dispose()
    {
        // Or (full fence): closes against a racing Map (which counts itself only while the bit is clear); the first
        // Dispose sets the bit, later ones return. If no mapping was counted, we are the last user: free the cache now.
        int before = Interlocked.Or(ref _mappings, ClosedBit);
        if ((before & ClosedBit) == 0 && (before & ~ClosedBit) == 0)
        {
            FreePageCache();
        }
    }

    /// <summary>Counts a new mapping (Map); false if the file is closed.</summary>
    internal bool TryAddMapping()
    {
        int n = Volatile.Read(ref _mappings);
        while ((n & ClosedBit) == 0)
        {
            // CAS (full fence): counts the mapping only while the file is open; Dispose's Or then sees it.
            int seen = Interlocked.CompareExchange(ref _mappings, n + 1, n);
            if (seen == n)
            {
                return true;
            }

            n = seen; // Another mapping came or went: retry with the new count.
        }

        return false;
    }

    /// <summary>Counts a piece split from (or merged out of) VMAs that already map the file (so the count is positive).</summary>
    internal void AddMappingOfLive() => Interlocked.Increment(ref _mappings); // Atomic: other address spaces count too.

    /// <summary>A VMA that mapped the file is gone (its PTEs already zapped); the last one of a closed file frees the page cache.</summary>
    internal void RemoveMapping()
    {
        // Atomic: other address spaces count too. Exactly one decrement reaches "closed, no mappings".
        if (Interlocked.Decrement(ref _mappings) == ClosedBit)
        {
            FreePageCache();
        }
    }

    private void FreePageCache()
    {
        // Exchange: once, whoever gets here (Dispose or the last unmap); nothing after the machine's disposal.
        if (Interlocked.Exchange(ref _freed, 1) != 0 || _machine.IsDisposed)
        {
            return;
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

    private void CheckUsable()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ObjectDisposedException.ThrowIf(_machine.IsDisposed, _machine);
    }

    private void CheckRange(long offset, int count, string bufferName)
    {
        if (offset < 0 || offset > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"Offset must be in 0..{Length} (the file's length).");
        }

        if (count > Length - offset)
        {
            throw new ArgumentException($"{count} bytes at offset {offset} run past the end of the file (length {Length}).", bufferName);
        }
    }
}
