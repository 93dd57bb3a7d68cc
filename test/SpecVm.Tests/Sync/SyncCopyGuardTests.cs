using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using SpecVm.Tests.Packaging;

namespace SpecVm.Tests.Sync;

/// <summary>
/// <c>PtLock</c> and <c>SeqCount</c> are mutable structs embedded in <c>PageFrame</c> and <c>Vma</c>: a copy is a second,
/// independent lock or count, and nothing at run time notices. They are internal (users cannot copy them), and this
/// test holds the library's own code to "a field or a <c>ref</c>, never a value": it binds the library's source with
/// Roslyn and fails on any local, parameter, return value, property or assignment that holds one by value.
/// </summary>
public class SyncCopyGuardTests
{
    private static readonly string[] Guarded = ["SpecVm.Sync.PtLock", "SpecVm.Sync.SeqCount"];

    [Fact]
    public void TheLibraryNeverHoldsAPtLockOrSeqCountByValue()
    {
        List<string> copies = FindCopies(LibrarySources());
        Assert.True(copies.Count == 0, "PtLock/SeqCount held by value (a silent second lock or count):\n" + string.Join("\n", copies));
    }

    [Fact]
    public void ACopiedLockOrCountIsCaught()
    {
        // The checker must be able to fail: plant every shape of copy it looks for.
        const string Planted = """
            namespace SpecVm.Sync;
            internal static class PlantedCopies
            {
                internal static bool Local(ref SpecVm.Memory.PageFrame frame) { var copy = frame.Ptl; return copy.TryLock(0); }
                internal static bool Parameter(PtLock byValue) => byValue.TryLock(0);
                internal static SeqCount Returned(SpecVm.Mm.Vma vma) => vma.Seq;
                internal static void Assigned(ref SpecVm.Memory.PageFrame a, ref SpecVm.Memory.PageFrame b) => a.Ptl = b.Ptl;
                internal static bool ByRefIsFine(ref SpecVm.Memory.PageFrame frame) { ref PtLock l = ref frame.Ptl; frame.Ptl = default; return l.TryLock(0); }
            }
            """;
        List<string> copies = FindCopies([.. LibrarySources(), CSharpSyntaxTree.ParseText(Planted, ParseOptions, path: "Planted.cs")]);
        Assert.Equal(4, copies.Count(c => c.StartsWith("Planted.cs", StringComparison.Ordinal)));
        Assert.DoesNotContain(copies, c => c.Contains("ByRefIsFine", StringComparison.Ordinal));
    }

    private static readonly CSharpParseOptions ParseOptions = CSharpParseOptions.Default.WithLanguageVersion(LanguageVersion.Latest);

    private static List<SyntaxTree> LibrarySources()
    {
        string src = Path.Combine(RepoPaths.Root, "src", "SpecVm");
        return Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                     && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Select(f => CSharpSyntaxTree.ParseText(File.ReadAllText(f), ParseOptions, path: Path.GetRelativePath(src, f)))
            .ToList();
    }

    private static List<string> FindCopies(List<SyntaxTree> trees)
    {
        string runtime = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var references = new[] { "System.Private.CoreLib.dll", "System.Runtime.dll", "System.Collections.dll", "System.Linq.dll", "System.Threading.dll", "System.Runtime.InteropServices.dll", "System.Text.Json.dll", "System.Console.dll", "System.Diagnostics.Process.dll", "System.Memory.dll" }
            .Select(n => Path.Combine(runtime, n)).Where(File.Exists).Select(p => (MetadataReference)MetadataReference.CreateFromFile(p));
        var usings = CSharpSyntaxTree.ParseText("global using System; global using System.Collections.Generic; global using System.IO; global using System.Linq; global using System.Threading; global using System.Threading.Tasks;", ParseOptions);
        var compilation = CSharpCompilation.Create("CopyGuard", trees.Append(usings), references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, allowUnsafe: true, nullableContextOptions: NullableContextOptions.Enable));

        var found = new List<string>();
        foreach (SyntaxTree tree in trees)
        {
            SemanticModel model = compilation.GetSemanticModel(tree);
            foreach (SyntaxNode node in tree.GetRoot().DescendantNodes())
            {
                string? what = node switch
                {
                    VariableDeclarationSyntax v when v.Parent is LocalDeclarationStatementSyntax && v.Type is not RefTypeSyntax && IsGuarded(model.GetTypeInfo(v.Type).Type) => "local",
                    ParameterSyntax p when p.Type != null && p.Modifiers.All(m => !m.IsKind(SyntaxKind.RefKeyword) && !m.IsKind(SyntaxKind.InKeyword) && !m.IsKind(SyntaxKind.OutKeyword)) && IsGuarded(model.GetTypeInfo(p.Type).Type) => "by-value parameter",
                    MethodDeclarationSyntax m when m.ReturnType is not RefTypeSyntax && IsGuarded(model.GetTypeInfo(m.ReturnType).Type) => "by-value return",
                    LocalFunctionStatementSyntax f when f.ReturnType is not RefTypeSyntax && IsGuarded(model.GetTypeInfo(f.ReturnType).Type) => "by-value return",
                    PropertyDeclarationSyntax p when p.Type is not RefTypeSyntax && IsGuarded(model.GetTypeInfo(p.Type).Type) => "by-value property",
                    AssignmentExpressionSyntax a when a.Right is not LiteralExpressionSyntax { RawKind: (int)SyntaxKind.DefaultLiteralExpression } && a.Right is not DefaultExpressionSyntax && a.Right is not RefExpressionSyntax && IsGuarded(model.GetTypeInfo(a.Right).Type) => "copying assignment",
                    _ => null,
                };
                if (what != null)
                {
                    FileLinePositionSpan at = node.GetLocation().GetLineSpan();
                    found.Add($"{at.Path}:{at.StartLinePosition.Line + 1}: {what}: {Enclosing(node)}: {node.ToString().Split('\n')[0].Trim()}");
                }
            }
        }

        return found;
    }

    private static bool IsGuarded(ITypeSymbol? type) => type != null && Guarded.Contains(type.ToDisplayString());

    private static string Enclosing(SyntaxNode node) =>
        node.AncestorsAndSelf().OfType<MemberDeclarationSyntax>().Select(m => m switch
        {
            MethodDeclarationSyntax md => md.Identifier.Text,
            PropertyDeclarationSyntax pd => pd.Identifier.Text,
            _ => null,
        }).FirstOrDefault(n => n != null) ?? "(type)";
}
