using SpecVm.Memory;
using SpecVm.Smp;

namespace SpecVm.Mm;

// AddressSpace, by operation: mprotect: split, change the PTEs, shoot down on narrowing, merge back (Linux
// vma_merge).
public sealed unsafe partial class AddressSpace
{
    /// <summary>
    /// Changes the protection of [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>)
    /// (<c>mprotect</c>). The whole range must be mapped. PTEs are updated under the PTL; narrowing shoots down TLBs.
    /// </summary>
    /// <param name="cpu">The CPU doing the call.</param>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="length">Bytes: positive, a multiple of 4096.</param>
    /// <param name="protection">The new protection.</param>
    public void Protect(Cpu cpu, ulong start, ulong length, Protection protection)
    {
        CheckSyscall(cpu);
        CheckLength(length);
        CheckRange(start, length, nameof(start));
        CheckProtection(protection);
        ulong end = start + length;
        WriteLock(cpu);
        try
        {
            var old = new List<Vma>();
            _index.CollectOverlapping(start, end, old);
            CheckFullyMapped(old, start, end, nameof(start));
            foreach (Vma v in old)
            {
                if (v.Kind == MappingKind.SharedFile && (protection & Protection.Write) != 0 && !v.File!.IsWritable)
                {
                    throw new ArgumentException($"EACCES: file {v.File.Id} was opened read-only; a shared mapping of it cannot be made writable.", nameof(protection));
                }
            }

            // The new layout as extents (the untouched remainders, the changed middle), joined where they continue
            // each other, with the neighbours outside the range when they join too (Linux vma_merge: mprotect back
            // and forth leaves one VMA).
            var extents = new List<Extent>(old.Count + 4);
            foreach (Vma v in old)
            {
                Extent e = Extent.Of(v);
                if (v.Start < start)
                {
                    extents.Add(e.Slice(v.Start, start, v.Protection));
                }

                extents.Add(e.Slice(Math.Max(v.Start, start), Math.Min(v.End, end), protection));
                if (v.End > end)
                {
                    extents.Add(e.Slice(end, v.End, v.Protection));
                }
            }

            Vma? prev = start > MinAddress ? _index.Find(start - 1) : null;
            if (prev != null && prev.End == start && Extent.Of(prev).CanJoin(extents[0]))
            {
                old.Insert(0, prev);
                extents.Insert(0, Extent.Of(prev));
            }

            Vma? next = _index.Find(end);
            if (next != null && next.Start == end && extents[^1].CanJoin(Extent.Of(next)))
            {
                old.Add(next);
                extents.Add(Extent.Of(next));
            }

            var pieces = new List<Vma>(extents.Count);
            Extent run = extents[0];
            for (int i = 1; i <= extents.Count; i++)
            {
                if (i < extents.Count && run.CanJoin(extents[i]))
                {
                    run = run.Join(extents[i]);
                    continue;
                }

                Vma piece = _slab.Allocate();
                run.File?.AddMappingOfLive(); // Each old VMA still holds its own count until retired: the file is alive.
                piece.Initialize(this, run.Start, run.End, run.Protection, run.Kind, run.File, run.FilePage);
                if (run.AnonVma)
                {
                    piece.SetAnonVmaUnpublished(); // Split and merge keep the anon_vma (anon_vma_clone, dup_anon_vma).
                }
                pieces.Add(piece);
                if (i < extents.Count)
                {
                    run = extents[i];
                }
            }

            foreach (Vma v in old)
            {
                BeginChange(cpu, v);
            }

            Hook(HookPoint.WriterBeforeIndexPublish, cpu);
            _index.Replace(old, pieces);
            Hook(HookPoint.WriterAfterIndexPublish, cpu);
            foreach (Vma v in old)
            {
                v.MarkDetached(); // Readers that find this VMA through an old index snapshot see it detached.
            }

            bool narrowed = false;
            foreach (Vma piece in pieces)
            {
                if (piece.End > start && piece.Start < end)
                {
                    narrowed |= ChangePtes(cpu, piece, Math.Max(piece.Start, start), Math.Min(piece.End, end));
                }
            }

            Hook(HookPoint.WriterBetweenZapAndShootdown, cpu);
            if (narrowed)
            {
                FlushTlbRange(cpu, start, end, tablesFreed: false);
            }

            foreach (Vma v in old)
            {
                EndChangeAndRetire(v);
            }
        }
        finally
        {
            WriteUnlock(cpu);
        }
    }

    /// <summary>A range with the attributes that decide whether two VMAs may merge (Linux <c>is_mergeable_vma</c>).</summary>
    /// <remarks>
    /// <see cref="AnonVma"/> does not decide merging (without fork, every <c>anon_vma</c> of an address space is
    /// compatible with its neighbours': Linux's <c>find_mergeable_anon_vma</c> shares them); a join has one if a part had.
    /// </remarks>
    private readonly record struct Extent(ulong Start, ulong End, Protection Protection, MappingKind Kind, SimFile? File, long FilePage, bool AnonVma)
    {
        public static Extent Of(Vma v) => new(v.Start, v.End, v.Protection, v.Kind, v.File, v.FilePageOffset, v.HasAnonVma);

        /// <summary>The file page mapped at <see cref="End"/> (one past the last).</summary>
        private long EndFilePage => FilePage + (long)((End - Start) >> PhysicalMemory.PageShift);

        /// <summary>[from, to) of this extent, with another protection.</summary>
        public Extent Slice(ulong from, ulong to, Protection protection) =>
            new(from, to, protection, Kind, File, FilePage + (long)((from - Start) >> PhysicalMemory.PageShift), AnonVma);

        /// <summary>True if <paramref name="next"/> starts where this ends and continues it (same rights, same backing, next file pages).</summary>
        public bool CanJoin(Extent next) =>
            End == next.Start && Protection == next.Protection && Kind == next.Kind && ReferenceEquals(File, next.File)
            && (File == null || EndFilePage == next.FilePage);

        /// <summary>This extent extended over <paramref name="next"/> (which <see cref="CanJoin"/>).</summary>
        public Extent Join(Extent next) => this with { End = next.End, AnonVma = AnonVma || next.AnonVma };
    }
}
