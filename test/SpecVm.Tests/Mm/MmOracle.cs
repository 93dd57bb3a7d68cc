using SpecVm.Mm;

namespace SpecVm.Tests.Mm;

/// <summary>
/// A sequential model of an address space at page granularity: which pages are mapped, with what protection and
/// backing, and what bytes each holds (a private copy, zeros, or the file's bytes). It knows nothing of VMAs, page
/// tables or TLBs, which is what makes it a useful oracle for them.
/// </summary>
internal sealed class MmOracle
{
    public const int PageSize = 4096;

    private readonly Dictionary<ulong, Page> _pages = [];

    public IEnumerable<ulong> MappedPages => _pages.Keys;

    public int Count => _pages.Count;

    public static bool AllowsRead(Protection p) => (p & (Protection.Read | Protection.Write)) != 0;

    public static bool AllowsWrite(Protection p) => (p & Protection.Write) != 0;

    public bool IsMapped(ulong page) => _pages.ContainsKey(page);

    public Page? PageAt(ulong address) => _pages.GetValueOrDefault(address & ~(ulong)(PageSize - 1));

    public bool AnyMapped(ulong start, ulong length)
    {
        for (ulong a = start; a < start + length; a += PageSize)
        {
            if (_pages.ContainsKey(a))
            {
                return true;
            }
        }

        return false;
    }

    public bool FullyMapped(ulong start, ulong length)
    {
        for (ulong a = start; a < start + length; a += PageSize)
        {
            if (!_pages.ContainsKey(a))
            {
                return false;
            }
        }

        return true;
    }

    public void Map(ulong start, ulong length, Protection protection, MappingKind kind, FileModel? file, long fileOffset)
    {
        for (ulong i = 0; i < length / PageSize; i++)
        {
            _pages.Add(start + (i * PageSize), new Page
            {
                Protection = protection,
                Kind = kind,
                File = file,
                FilePage = (fileOffset / PageSize) + (long)i,
            });
        }
    }

    public void Unmap(ulong start, ulong length)
    {
        for (ulong a = start; a < start + length; a += PageSize)
        {
            _pages.Remove(a);
        }
    }

    /// <summary>Mirrors Protect: false (nothing changed) when the real call must throw.</summary>
    public bool Protect(ulong start, ulong length, Protection protection)
    {
        if (!FullyMapped(start, length))
        {
            return false;
        }

        for (ulong a = start; a < start + length; a += PageSize)
        {
            Page p = _pages[a];
            if (p.Kind == MappingKind.SharedFile && AllowsWrite(protection) && !p.File!.File.IsWritable)
            {
                return false;
            }
        }

        for (ulong a = start; a < start + length; a += PageSize)
        {
            _pages[a].Protection = protection;
        }

        return true;
    }

    /// <summary>Mirrors DontNeed: false when the real call must throw.</summary>
    public bool DontNeed(ulong start, ulong length)
    {
        if (!FullyMapped(start, length))
        {
            return false;
        }

        for (ulong a = start; a < start + length; a += PageSize)
        {
            _pages[a].Private = null; // Anonymous: zeros again; private file: the file's page again; shared: unchanged.
        }

        return true;
    }

    /// <summary>What TryReadBytes must return, and the bytes of the pages it completes.</summary>
    public AccessResult Read(ulong address, Span<byte> into)
    {
        while (!into.IsEmpty)
        {
            int inPage = (int)(address % PageSize);
            int n = Math.Min(into.Length, PageSize - inPage);
            Page? p = PageAt(address);
            if (p == null || !AllowsRead(p.Protection))
            {
                return AccessResult.SegmentationFault;
            }

            p.Content.AsSpan(inPage, n).CopyTo(into);
            into = into[n..];
            address += (ulong)n;
        }

        return AccessResult.Ok;
    }

    /// <summary>What TryWriteBytes must return; applies the pages it completes (a write stops at the first bad page).</summary>
    public AccessResult Write(ulong address, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            int inPage = (int)(address % PageSize);
            int n = Math.Min(data.Length, PageSize - inPage);
            Page? p = PageAt(address);
            if (p == null || !AllowsWrite(p.Protection))
            {
                return AccessResult.SegmentationFault;
            }

            Span<byte> target = p.Kind == MappingKind.SharedFile
                ? p.File!.Data.AsSpan((int)(p.FilePage * PageSize) + inPage, n)
                : (p.Private ??= p.Content).AsSpan(inPage, n);
            data[..n].CopyTo(target);
            data = data[n..];
            address += (ulong)n;
        }

        return AccessResult.Ok;
    }

    internal sealed class Page
    {
        public Protection Protection;
        public MappingKind Kind;
        public FileModel? File;
        public long FilePage;

        /// <summary>Anonymous or copied-on-write bytes; null: zeros (anonymous) or the file's page (file).</summary>
        public byte[]? Private;

        /// <summary>The bytes a read sees now.</summary>
        public byte[] Content => Private ?? (Kind == MappingKind.Anonymous ? new byte[PageSize] : File!.Data.AsSpan((int)(FilePage * PageSize), PageSize).ToArray());
    }

    /// <summary>A file and the bytes it should hold.</summary>
    internal sealed class FileModel(SimFile file)
    {
        public SimFile File { get; } = file;

        public byte[] Data { get; } = new byte[file.Length];
    }
}
