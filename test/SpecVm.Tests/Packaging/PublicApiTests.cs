using System.Reflection;
using System.Text;

namespace SpecVm.Tests.Packaging;

/// <summary>
/// The library's public surface is tracked in PublicApi.txt beside this file: an accidental change (a removed or
/// renamed member, a changed signature) fails here and shows up in review. To accept an intended change, run the
/// tests with SPECVM_UPDATE_PUBLIC_API=1 and commit the regenerated file.
/// </summary>
public class PublicApiTests
{
    [Fact]
    public void PublicSurfaceMatchesTheCheckedInList()
    {
        string path = Path.Combine(RepoPaths.Root, "test", "SpecVm.Tests", "Packaging", "PublicApi.txt");
        string actual = Describe(typeof(SpecVm.Sync.CacheLine).Assembly);
        if (Environment.GetEnvironmentVariable("SPECVM_UPDATE_PUBLIC_API") == "1")
        {
            File.WriteAllText(path, actual);
        }

        string expected = File.Exists(path) ? File.ReadAllText(path) : string.Empty;
        if (expected != actual)
        {
            var removed = expected.Split('\n').Except(actual.Split('\n')).Take(40);
            var added = actual.Split('\n').Except(expected.Split('\n')).Take(40);
            Assert.Fail("The public API changed. If intended, rerun with SPECVM_UPDATE_PUBLIC_API=1 and commit PublicApi.txt.\n" +
                        $"Removed:\n  {string.Join("\n  ", removed)}\nAdded:\n  {string.Join("\n  ", added)}");
        }
    }

    [Fact]
    public void TheXmlDocumentationFileShipsBesideTheAssembly()
    {
        // Every public member having a summary is enforced by the build (GenerateDocumentationFile with CS1591 as an
        // error); this checks that the documentation file the package packs is produced beside the assembly.
        string xml = Path.ChangeExtension(typeof(SpecVm.Sync.CacheLine).Assembly.Location, ".xml");
        Assert.True(File.Exists(xml), $"missing {xml}");
        Assert.Contains("<member name=\"T:SpecVm.Mm.AddressSpace\">", File.ReadAllText(xml));
    }

    private static string Describe(Assembly assembly)
    {
        var lines = new List<string>();
        foreach (Type t in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            lines.Add($"{Kind(t)} {Name(t)}{BaseList(t)}");
            const BindingFlags Flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            var members = new List<string>();
            foreach (MemberInfo m in t.GetMembers(Flags))
            {
                string? d = Member(m);
                if (d != null)
                {
                    members.Add("  " + d);
                }
            }

            members.Sort(StringComparer.Ordinal);
            lines.AddRange(members);
        }

        return string.Join("\n", lines) + "\n";
    }

    private static string Kind(Type t) =>
        t.IsEnum ? "enum" : t.IsInterface ? "interface" : t.IsValueType ? "struct" : t.IsAbstract && t.IsSealed ? "static class" : t.IsAbstract ? "abstract class" : t.IsSealed ? "sealed class" : "class";

    private static string BaseList(Type t)
    {
        var parts = new List<string>();
        if (t.BaseType != null && t.BaseType != typeof(object) && t.BaseType != typeof(ValueType) && t.BaseType != typeof(Enum))
        {
            parts.Add(Name(t.BaseType));
        }

        parts.AddRange(t.GetInterfaces().Select(Name).OrderBy(n => n, StringComparer.Ordinal));
        return parts.Count == 0 ? string.Empty : " : " + string.Join(", ", parts);
    }

    private static string? Member(MemberInfo m) => m switch
    {
        ConstructorInfo c => $"ctor({Params(c)})",
        MethodInfo mi when !mi.IsSpecialName => $"{(mi.IsStatic ? "static " : "")}{(mi.IsAbstract ? "abstract " : mi.IsVirtual && !mi.IsFinal ? "virtual " : "")}{Name(mi.ReturnType)} {mi.Name}{Generic(mi)}({Params(mi)})",
        PropertyInfo p => $"{(p.GetMethod?.IsStatic ?? p.SetMethod?.IsStatic ?? false ? "static " : "")}{Name(p.PropertyType)} {p.Name} {{ {(p.GetMethod?.IsPublic == true ? "get; " : "")}{(p.SetMethod?.IsPublic == true ? (IsInit(p.SetMethod) ? "init; " : "set; ") : "")}}}",
        FieldInfo f when f.DeclaringType!.IsEnum && f.IsStatic => $"{f.Name} = {Convert.ToInt64(f.GetRawConstantValue())}",
        FieldInfo f when !f.IsSpecialName => $"{(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{(f.IsInitOnly ? "readonly " : "")}{Name(f.FieldType)} {f.Name}{(f.IsLiteral ? $" = {f.GetRawConstantValue()}" : "")}",
        EventInfo e => $"event {Name(e.EventHandlerType!)} {e.Name}",
        _ => null,
    };

    private static bool IsInit(MethodInfo setter) =>
        setter.ReturnParameter.GetRequiredCustomModifiers().Any(t => t.FullName == "System.Runtime.CompilerServices.IsExternalInit");

    private static string Generic(MethodInfo m) => m.IsGenericMethodDefinition ? "<" + string.Join(", ", m.GetGenericArguments().Select(a => a.Name)) + ">" : string.Empty;

    private static string Params(MethodBase m) => string.Join(", ", m.GetParameters().Select(p =>
        $"{(p.IsOut ? "out " : p.ParameterType.IsByRef ? "ref " : "")}{Name(p.ParameterType)} {p.Name}{(p.HasDefaultValue ? " = " + (p.DefaultValue ?? "null") : "")}"));

    private static string Name(Type t)
    {
        if (t.IsByRef)
        {
            return Name(t.GetElementType()!);
        }

        if (t.IsPointer)
        {
            return Name(t.GetElementType()!) + "*";
        }

        if (t.IsArray)
        {
            return Name(t.GetElementType()!) + "[]";
        }

        if (t.IsGenericParameter)
        {
            return t.Name;
        }

        string name = (t.IsNested ? Name(t.DeclaringType!) + "." : t.Namespace + ".") + t.Name;
        if (t.IsGenericType)
        {
            name = name[..name.IndexOf('`')] + "<" + string.Join(", ", t.GetGenericArguments().Select(Name)) + ">";
        }

        return name;
    }
}
