using SpecVm.Sync;
namespace SpecVm.Mm;

/// <summary>
/// The set of an address space's VMAs, ordered by address, with lookups that take no lock and are safe against
/// concurrent updates (the maple tree's role in Linux).
/// </summary>
/// <remarks>
/// <para>
/// A path-copying B-tree in the spirit of the maple tree (docs/references.md, "munmap, the gather and page tables": 16 slots per leaf): nodes are immutable once
/// published. An update (always under the mmap lock held for write) copies only the nodes on the path from the root
/// to the leaves it changes — O(log n) nodes of at most <see cref="Fanout"/> slots — and publishes the new root with
/// one release store. A reader takes one acquire load of the root and searches a version that never changes under
/// it; old nodes are reclaimed by the GC once no reader holds them (the GC plays RCU's part for the nodes; the VMAs
/// themselves are reused only after an SRCU grace period, see <see cref="VmaSlab"/>).
/// </para>
/// <para>
/// Deletion removes empty nodes but does not merge underfull ones, so the height stays bounded by the logarithm of
/// the largest size the tree has had. Lookups are O(log n) and allocation-free.
/// </para>
/// <para>
/// Public surface: the reads (<see cref="Find"/>, <see cref="FirstOverlap"/>, <see cref="Count"/>,
/// <see cref="Snapshot"/>). Only the address space changes the index, under its mmap write lock.
/// </para>
/// </remarks>
public sealed class VmaIndex
{
    /// <summary>Slots per node (the maple tree's leaves have 16).</summary>
    internal const int Fanout = 16;

    private Root _root = new(null, 0);

    /// <summary>Creates an empty index (each address space owns one: <see cref="AddressSpace.Vmas"/>).</summary>
    internal VmaIndex()
    {
    }

    /// <summary>The number of VMAs.</summary>
    public int Count => Volatile.Read(ref _root).Count;

    /// <summary>The height of the tree (0 when empty).</summary>
    internal int Height
    {
        get
        {
            int h = 0;
            // Acquire: one published version, as every lookup takes it.
            for (Node? n = Volatile.Read(ref _root).Node; n != null; n = n.Children?[0])
            {
                h++;
            }

            return h;
        }
    }

    /// <summary>
    /// A consistent copy of every VMA in address order, safe to take while other CPUs map and unmap: it is retaken
    /// until no writer published a new index or changed a VMA while it was copied (each VMA's sequence count unchanged
    /// and even, the index's root unchanged), so it never shows a retired or recycled VMA.
    /// </summary>
    public IReadOnlyList<VmaInfo> Snapshot()
    {
        var live = new List<Vma>();
        var copy = new List<VmaInfo>();
        var backoff = new Backoff(Backoff.RetrySpinSteps);
        while (true)
        {
            // Acquire: the nodes and VMAs of this root were initialised before it was published.
            Root root = Volatile.Read(ref _root);
            live.Clear();
            copy.Clear();
            CollectAll(root.Node, live);
            bool stable = true;
            foreach (Vma v in live)
            {
                if (!v.TryCopy(out VmaInfo info))
                {
                    stable = false; // A writer is changing or retiring this VMA: take the snapshot again.
                    break;
                }

                copy.Add(info);
            }

            // Acquire re-read of the root: a writer that finished while we copied published a new one.
            if (stable && ReferenceEquals(Volatile.Read(ref _root), root))
            {
                return [.. copy];
            }

            backoff.SpinOrYield(null); // A busy writer: pause, and after a few retries let it finish rather than spin against it.
        }
    }

    /// <summary>The live VMA objects in address order (checkers and the address space itself; they may be retired meanwhile).</summary>
    internal IReadOnlyList<Vma> SnapshotLive()
    {
        var all = new List<Vma>(Count);
        Collect(Volatile.Read(ref _root).Node, 0, ulong.MaxValue, all);
        return all;
    }

    /// <summary>The VMA containing <paramref name="address"/>, or null. Lockless and allocation-free.</summary>
    /// <param name="address">A user address.</param>
    public Vma? Find(ulong address)
    {
        VirtualTime.Access(this, 0, LineAccess.Load); // The root's line: read-shared until a writer publishes.
        Vma? v = Floor(address);
        return v != null && address < v.End ? v : null;
    }

    /// <summary>The first VMA (lowest address) overlapping [<paramref name="start"/>, <paramref name="end"/>), or null.</summary>
    /// <param name="start">Start address.</param>
    /// <param name="end">End address (exclusive).</param>
    public Vma? FirstOverlap(ulong start, ulong end)
    {
        Root root = Volatile.Read(ref _root);
        Vma? floor = Floor(root.Node, start);
        if (floor != null && floor.End > start)
        {
            return floor;
        }

        Vma? next = Ceiling(root.Node, start);
        return next != null && next.Start < end ? next : null;
    }

    /// <summary>Adds every VMA overlapping [<paramref name="start"/>, <paramref name="end"/>) to <paramref name="into"/>, in order.</summary>
    /// <param name="start">Start address.</param>
    /// <param name="end">End address (exclusive).</param>
    /// <param name="into">The list to fill.</param>
    internal void CollectOverlapping(ulong start, ulong end, List<Vma> into)
    {
        ArgumentNullException.ThrowIfNull(into);
        Root root = Volatile.Read(ref _root);
        Vma? floor = Floor(root.Node, start);
        ulong from = floor != null && floor.End > start ? floor.Start : start;
        Collect(root.Node, from, end, into);
    }

    /// <summary>Removes <paramref name="remove"/> and adds <paramref name="add"/> in one publication. Caller holds the mmap lock for write.</summary>
    /// <param name="remove">VMAs currently in the index.</param>
    /// <param name="add">New VMAs, overlapping nothing that remains.</param>
    internal void Replace(IReadOnlyCollection<Vma> remove, IReadOnlyCollection<Vma> add)
    {
        ArgumentNullException.ThrowIfNull(remove);
        ArgumentNullException.ThrowIfNull(add);
        Root old = _root;
        Node? node = old.Node;
        int count = old.Count;
        foreach (Vma v in remove)
        {
            node = Delete(node, v, out bool found);
            if (!found)
            {
                throw new InvalidOperationException($"VmaIndex.Replace: {v} is not in the index.");
            }

            count--;
        }

        foreach (Vma v in add)
        {
            Vma? floor = Floor(node, v.Start);
            Vma? ceiling = Ceiling(node, v.Start);
            if ((floor != null && floor.End > v.Start) || (ceiling != null && ceiling.Start < v.End))
            {
                throw new InvalidOperationException($"VmaIndex.Replace: {v} overlaps {(floor != null && floor.End > v.Start ? floor : ceiling)}.");
            }

            node = Insert(node, v);
            count++;
        }

        // Release: every node built above, and the VMAs' fields (written before this call), are visible before the
        // root that reaches them; a lockless reader sees the old version or the new one, never a half-built one.
        VirtualTime.Access(this, 0, LineAccess.Store);
        Volatile.Write(ref _root, new Root(node, count));
    }

    private Vma? Floor(ulong address) => Floor(Volatile.Read(ref _root).Node, address);

    /// <summary>The VMA with the largest start ≤ <paramref name="address"/>.</summary>
    private static Vma? Floor(Node? node, ulong address)
    {
        Vma? best = null;
        while (node != null)
        {
            if (node.Children == null)
            {
                Vma[] leaf = node.Vmas!;
                int i = UpperBound(leaf, address) - 1;
                return i >= 0 ? leaf[i] : best;
            }

            int c = ChildFor(node, address);

            // Left siblings hold smaller starts: remember the max of the one to our left in case our child has none ≤ address.
            if (c > 0)
            {
                best = Max(node.Children[c - 1]);
            }

            node = node.Children[c];
        }

        return best;
    }

    /// <summary>The VMA with the smallest start &gt; <paramref name="address"/>.</summary>
    private static Vma? Ceiling(Node? node, ulong address)
    {
        Vma? best = null;
        while (node != null)
        {
            if (node.Children == null)
            {
                Vma[] leaf = node.Vmas!;
                int i = UpperBound(leaf, address);
                return i < leaf.Length ? leaf[i] : best;
            }

            int c = ChildFor(node, address);
            if (c + 1 < node.Children.Length)
            {
                best = Min(node.Children[c + 1]);
            }

            node = node.Children[c];
        }

        return best;
    }

    private static Vma Max(Node node)
    {
        while (node.Children != null)
        {
            node = node.Children[^1];
        }

        return node.Vmas![^1];
    }

    private static Vma Min(Node node)
    {
        while (node.Children != null)
        {
            node = node.Children[0];
        }

        return node.Vmas![0];
    }

    /// <summary>Every VMA under <paramref name="node"/>, in order, without reading any of their fields (a stale root's VMAs may be poisoned).</summary>
    private static void CollectAll(Node? node, List<Vma> into)
    {
        if (node == null)
        {
            return;
        }

        if (node.Children == null)
        {
            into.AddRange(node.Vmas!);
            return;
        }

        foreach (Node child in node.Children)
        {
            CollectAll(child, into);
        }
    }

    private static void Collect(Node? node, ulong from, ulong end, List<Vma> into)
    {
        if (node == null)
        {
            return;
        }

        if (node.Children == null)
        {
            foreach (Vma v in node.Vmas!)
            {
                if (v.Start >= from && v.Start < end)
                {
                    into.Add(v);
                }
            }

            return;
        }

        int first = ChildFor(node, from);
        for (int c = first; c < node.Children.Length && (c == first || node.Keys![c] < end); c++)
        {
            Collect(node.Children[c], from, end, into);
        }
    }

    /// <summary>Index of the child whose key range holds <paramref name="address"/>: the last key ≤ address (or 0).</summary>
    private static int ChildFor(Node node, ulong address)
    {
        ulong[] keys = node.Keys!;
        int lo = 1;
        int hi = keys.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (keys[mid] <= address)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo - 1;
    }

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

    private static Node Insert(Node? root, Vma v)
    {
        if (root == null)
        {
            return Node.Leaf([v]);
        }

        Node left = InsertInto(root, v, out Node? right);
        return right == null ? left : Node.Internal([MinKey(left), MinKey(right)], [left, right]);
    }

    private static ulong MinKey(Node n) => n.Children == null ? n.Vmas![0].Start : n.Keys![0];

    /// <summary>Path-copying insert; returns the copy of <paramref name="node"/> and, if it split, its new right sibling.</summary>
    private static Node InsertInto(Node node, Vma v, out Node? right)
    {
        if (node.Children == null)
        {
            Vma[] leaf = node.Vmas!;
            int at = UpperBound(leaf, v.Start);
            var next = new Vma[leaf.Length + 1];
            Array.Copy(leaf, next, at);
            next[at] = v;
            Array.Copy(leaf, at, next, at + 1, leaf.Length - at);
            if (next.Length <= Fanout)
            {
                right = null;
                return Node.Leaf(next);
            }

            int half = next.Length / 2;
            right = Node.Leaf(next[half..]);
            return Node.Leaf(next[..half]);
        }

        int c = ChildFor(node, v.Start);
        Node child = InsertInto(node.Children[c], v, out Node? split);
        ulong[] keys = (ulong[])node.Keys!.Clone();
        Node[] children = (Node[])node.Children.Clone();
        children[c] = child;
        keys[c] = Math.Min(keys[c], MinKey(child));
        if (split == null)
        {
            right = null;
            return Node.Internal(keys, children);
        }

        var k2 = new ulong[keys.Length + 1];
        var c2 = new Node[children.Length + 1];
        Array.Copy(keys, k2, c + 1);
        Array.Copy(children, c2, c + 1);
        k2[c + 1] = MinKey(split);
        c2[c + 1] = split;
        Array.Copy(keys, c + 1, k2, c + 2, keys.Length - c - 1);
        Array.Copy(children, c + 1, c2, c + 2, children.Length - c - 1);
        if (c2.Length <= Fanout)
        {
            right = null;
            return Node.Internal(k2, c2);
        }

        int h = c2.Length / 2;
        right = Node.Internal(k2[h..], c2[h..]);
        return Node.Internal(k2[..h], c2[..h]);
    }

    /// <summary>Path-copying delete of <paramref name="v"/> (by identity); returns the new subtree (null if it became empty).</summary>
    private static Node? Delete(Node? node, Vma v, out bool found)
    {
        found = false;
        if (node == null)
        {
            return null;
        }

        if (node.Children == null)
        {
            Vma[] leaf = node.Vmas!;
            int at = Array.IndexOf(leaf, v);
            if (at < 0)
            {
                return node;
            }

            found = true;
            if (leaf.Length == 1)
            {
                return null;
            }

            var next = new Vma[leaf.Length - 1];
            Array.Copy(leaf, next, at);
            Array.Copy(leaf, at + 1, next, at, leaf.Length - at - 1);
            return Node.Leaf(next);
        }

        int c = ChildFor(node, v.Start);
        Node? child = Delete(node.Children[c], v, out found);
        if (!found)
        {
            return node;
        }

        if (child != null)
        {
            var children = (Node[])node.Children.Clone();
            children[c] = child;
            return Node.Internal(node.Keys!, children);
        }

        if (node.Children.Length == 1)
        {
            return null;
        }

        // The child emptied: drop it and its key. A lone remaining child replaces this node (the tree shrinks).
        var k2 = new ulong[node.Keys!.Length - 1];
        var c2 = new Node[node.Children.Length - 1];
        Array.Copy(node.Keys, k2, c);
        Array.Copy(node.Children, c2, c);
        Array.Copy(node.Keys, c + 1, k2, c, node.Keys.Length - c - 1);
        Array.Copy(node.Children, c + 1, c2, c, node.Children.Length - c - 1);
        return c2.Length == 1 ? c2[0] : Node.Internal(k2, c2);
    }

    private sealed class Root(Node? node, int count)
    {
        public Node? Node { get; } = node;

        public int Count { get; } = count;
    }

    /// <summary>An immutable node: a leaf holds VMAs sorted by start; an internal node holds children and their minimum keys.</summary>
    private sealed class Node
    {
        public Vma[]? Vmas { get; private init; }

        public ulong[]? Keys { get; private init; }

        public Node[]? Children { get; private init; }

        public static Node Leaf(Vma[] vmas) => new() { Vmas = vmas };

        public static Node Internal(ulong[] keys, Node[] children) => new() { Keys = keys, Children = children };
    }
}
