-- placeholder: the workflow branch adds the real 002_links.sql (drop this file at merge).
select 1;
