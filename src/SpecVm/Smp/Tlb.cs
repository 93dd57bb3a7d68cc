using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpecVm.Smp;

/// <summary>
/// A CPU's software TLB: direct-mapped (QEMU softmmu style), tagged by address-space id and virtual page, caching the
/// leaf PTE (PFN and permissions). Only its CPU touches it; other CPUs ask for flushes with IPIs.
/// </summary>
internal sealed unsafe class Tlb : IDisposable
{
    /// <summary>Above this many pages a range flush flushes everything (Linux x86 <c>tlb_single_page_flush_ceiling</c> = 33).</summary>
    public const int SinglePageFlushCeiling = 33;

    private const ulong Valid = 1UL << 63;
    private Entry* _entries;
    private readonly int _mask;

    /// <summary>Creates an empty TLB.</summary>
    /// <param name="entries">The number of entries, a power of two from 16 to 2^20 (QEMU allows 64 to 2^20; default 256).</param>
    public Tlb(int entries)
    {
        if (entries < 16 || entries > (1 << 20) || (entries & (entries - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(entries), entries, "TLB size must be a power of two from 16 to 1048576.");
        }

        _mask = entries - 1;
        _entries = (Entry*)NativeMemory.AlignedAlloc((nuint)(entries * sizeof(Entry)), 128);
        NativeMemory.Clear(_entries, (nuint)(entries * sizeof(Entry)));
    }

    /// <summary>The number of entries.</summary>
    public int Size => _mask + 1;

    /// <summary>The tag of virtual page <paramref name="vpn"/> in address space <paramref name="asid"/>.</summary>
    /// <param name="asid">The address-space id.</param>
    /// <param name="vpn">The virtual page number (address >> 12).</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong MakeTag(int asid, ulong vpn) => Valid | ((ulong)(uint)asid << 36) | vpn;

    /// <summary>Looks up a page; on a hit returns the cached PTE value.</summary>
    /// <param name="tag">From <see cref="MakeTag"/>.</param>
    /// <param name="vpn">The virtual page number.</param>
    /// <param name="pte">The cached leaf PTE.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryLookup(ulong tag, ulong vpn, out ulong pte)
    {
        Entry* e = _entries + (int)(vpn & (ulong)_mask);
        pte = e->Pte;
        return e->Tag == tag;
    }

    /// <summary>Caches a translation, evicting whatever shared its slot.</summary>
    /// <param name="tag">From <see cref="MakeTag"/>.</param>
    /// <param name="vpn">The virtual page number.</param>
    /// <param name="pte">The leaf PTE value.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Fill(ulong tag, ulong vpn, ulong pte)
    {
        Entry* e = _entries + (int)(vpn & (ulong)_mask);
        e->Tag = tag;
        e->Pte = pte;
    }

    /// <summary>Drops the translation of one page if cached.</summary>
    /// <param name="vpn">The virtual page number.</param>
    public void FlushPage(ulong vpn)
    {
        Entry* e = _entries + (int)(vpn & (ulong)_mask);
        if ((e->Tag & ((1UL << 36) - 1)) == vpn)
        {
            e->Tag = 0;
        }
    }

    /// <summary>Drops pages [<paramref name="startVpn"/>, <paramref name="endVpn"/>), or everything if the range is large.</summary>
    /// <param name="startVpn">First page.</param>
    /// <param name="endVpn">One past the last page.</param>
    /// <returns>True if it flushed everything.</returns>
    public bool FlushRange(ulong startVpn, ulong endVpn)
    {
        if (endVpn <= startVpn)
        {
            return false;
        }

        if (endVpn - startVpn > SinglePageFlushCeiling)
        {
            FlushAll();
            return true;
        }

        for (ulong vpn = startVpn; vpn < endVpn; vpn++)
        {
            FlushPage(vpn);
        }

        return false;
    }

    /// <summary>Drops every translation.</summary>
    public void FlushAll() => NativeMemory.Clear(_entries, (nuint)((_mask + 1) * sizeof(Entry)));

    /// <summary>True if some entry for <paramref name="vpn"/> is cached (tests and checkers).</summary>
    /// <param name="vpn">The virtual page number.</param>
    public bool Contains(ulong vpn) => (_entries[(int)(vpn & (ulong)_mask)].Tag & ((1UL << 36) - 1)) == vpn && (_entries[(int)(vpn & (ulong)_mask)].Tag & Valid) != 0;

    /// <summary>Calls <paramref name="visit"/> with the page number and cached PTE of every valid entry of address space <paramref name="asid"/> (checkers; the owner must not be filling meanwhile).</summary>
    internal void ForEachValid(int asid, Action<ulong, ulong> visit)
    {
        for (int i = 0; i <= _mask; i++)
        {
            Entry e = _entries[i];
            if ((e.Tag & Valid) != 0 && (int)((e.Tag & ~Valid) >> 36) == asid)
            {
                visit(e.Tag & ((1UL << 36) - 1), e.Pte);
            }
        }
    }

    /// <summary>Frees the entries.</summary>
    public void Dispose()
    {
        if (_entries != null)
        {
            NativeMemory.AlignedFree(_entries);
            _entries = null;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Entry
    {
        public ulong Tag;
        public ulong Pte;
    }
}
