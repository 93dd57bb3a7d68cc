namespace SpecVm.Mm;

/// <summary>
/// The set of an address space's VMAs, ordered by address, with lookups that take no lock and are safe against
/// concurrent updates (the maple tree's role in Linux).
/// </summary>
/// <remarks>
/// This implementation is a copy-on-write sorted array: an update (always under the mmap lock held for write) builds
/// a new array and publishes it with one release store; a reader takes one acquire load of the array and binary
/// searches a snapshot that never changes under it. Old arrays are reclaimed by the GC once no reader holds them.
/// Lookups are O(log n) and allocation-free; updates are O(n).
/// </remarks>
public sealed class VmaIndex
{
    private Vma[] _vmas = [];

    /// <summary>The number of VMAs.</summary>
    public int Count => Volatile.Read(ref _vmas).Length;

    /// <summary>A snapshot of every VMA in address order.</summary>
    public IReadOnlyList<Vma> Snapshot() => Volatile.Read(ref _vmas);

    /// <summary>The VMA containing <paramref name="address"/>, or null. Lockless.</summary>
    /// <param name="address">A user address.</param>
    public Vma? Find(ulong address)
    {
        // Acquire: the array and every VMA it holds were fully initialised before it was published.
        Vma[] vmas = Volatile.Read(ref _vmas);
        int i = UpperBound(vmas, address) - 1;
        if (i < 0)
        {
            return null;
        }

        Vma v = vmas[i];
        return address < v.End ? v : null;
    }

    /// <summary>The first VMA (lowest address) overlapping [<paramref name="start"/>, <paramref name="end"/>), or null.</summary>
    /// <param name="start">Start address.</param>
    /// <param name="end">End address (exclusive).</param>
    public Vma? FirstOverlap(ulong start, ulong end)
    {
        Vma[] vmas = Volatile.Read(ref _vmas);
        int i = UpperBound(vmas, start) - 1;
        if (i >= 0 && vmas[i].End > start)
        {
            return vmas[i];
        }

        i++;
        return i < vmas.Length && vmas[i].Start < end ? vmas[i] : null;
    }

    /// <summary>Adds every VMA overlapping [<paramref name="start"/>, <paramref name="end"/>) to <paramref name="into"/>, in order.</summary>
    /// <param name="start">Start address.</param>
    /// <param name="end">End address (exclusive).</param>
    /// <param name="into">The list to fill.</param>
    public void CollectOverlapping(ulong start, ulong end, List<Vma> into)
    {
        ArgumentNullException.ThrowIfNull(into);
        Vma[] vmas = Volatile.Read(ref _vmas);
        int i = Math.Max(0, UpperBound(vmas, start) - 1);
        for (; i < vmas.Length && vmas[i].Start < end; i++)
        {
            if (vmas[i].End > start)
            {
                into.Add(vmas[i]);
            }
        }
    }

    /// <summary>Removes <paramref name="remove"/> and adds <paramref name="add"/> in one publication. Caller holds the mmap lock for write.</summary>
    /// <param name="remove">VMAs currently in the index.</param>
    /// <param name="add">New, non-overlapping VMAs.</param>
    public void Replace(IReadOnlyCollection<Vma> remove, IReadOnlyCollection<Vma> add)
    {
        ArgumentNullException.ThrowIfNull(remove);
        ArgumentNullException.ThrowIfNull(add);
        Vma[] old = _vmas;
        var next = new List<Vma>(old.Length - remove.Count + add.Count);
        foreach (Vma v in old)
        {
            if (!Contains(remove, v))
            {
                next.Add(v);
            }
        }

        if (next.Count != old.Length - remove.Count)
        {
            throw new InvalidOperationException("VmaIndex.Replace: a VMA to remove is not in the index.");
        }

        next.AddRange(add);
        next.Sort(static (a, b) => a.Start.CompareTo(b.Start));
        for (int i = 1; i < next.Count; i++)
        {
            if (next[i - 1].End > next[i].Start)
            {
                throw new InvalidOperationException($"VmaIndex.Replace: overlapping VMAs {next[i - 1]} and {next[i]}.");
            }
        }

        // Release: the new array's contents (and the VMAs' fields, written before this call) are visible before the
        // array is; a lockless Find sees either the old snapshot or the new one, never a half-built one.
        Volatile.Write(ref _vmas, next.ToArray());
    }

    private static bool Contains(IReadOnlyCollection<Vma> set, Vma v)
    {
        foreach (Vma x in set)
        {
            if (ReferenceEquals(x, v))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Index of the first VMA whose start is greater than <paramref name="address"/>.</summary>
    private static int UpperBound(Vma[] vmas, ulong address)
    {
        int lo = 0;
        int hi = vmas.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (vmas[mid].Start <= address)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }
}
